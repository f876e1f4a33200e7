import NIOCore
import Testing

@testable import Peer

/// The announce schedule, driven with made-up time: no sockets, no sleeping.
@Suite struct AnnounceScheduleTests {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    private func at(_ seconds: Int64) -> NIODeadline { start + .seconds(seconds) }

    @Test func everyTrackerIsAnnouncedEverythingAtStartThenHeartbeats() {
        var schedule = AnnounceSchedule(trackers: 2, heartbeatInterval: .seconds(60), now: start)
        #expect(schedule.due(now: start) == [.announceAll(tracker: 0), .announceAll(tracker: 1)])
        #expect(schedule.due(now: start).isEmpty, "actions still running are not started twice")
        schedule.finished(.announceAll(tracker: 0), succeeded: true, now: start)
        schedule.finished(.announceAll(tracker: 1), succeeded: true, now: start)
        #expect(schedule.isUpToDate(0) && schedule.isUpToDate(1))
        #expect(schedule.due(now: at(59)).isEmpty)
        #expect(schedule.due(now: at(60)) == [.heartbeat(tracker: 0), .heartbeat(tracker: 1)])
    }

    @Test func aTrackerThatFailedIsAnnouncedEverythingWhenItAnswersAgain() {
        var schedule = AnnounceSchedule(trackers: 2, heartbeatInterval: .seconds(60), now: start)
        for action in schedule.due(now: start) { schedule.finished(action, succeeded: true, now: start) }
        // A command found tracker 1 silent: it may miss a share made now.
        schedule.trackerFailed(1, now: at(10))
        #expect(!schedule.isUpToDate(1))
        #expect(schedule.due(now: at(10)).isEmpty)
        #expect(schedule.due(now: at(11)) == [.announceAll(tracker: 1)])
        schedule.finished(.announceAll(tracker: 1), succeeded: false, now: at(11))
        // Retries back off: 2 s, then 4 s, never beyond the heartbeat interval.
        #expect(schedule.due(now: at(12)).isEmpty)
        #expect(schedule.due(now: at(13)) == [.announceAll(tracker: 1)])
        schedule.finished(.announceAll(tracker: 1), succeeded: false, now: at(13))
        #expect(schedule.due(now: at(16)).isEmpty)
        #expect(schedule.due(now: at(17)) == [.announceAll(tracker: 1)])
        schedule.finished(.announceAll(tracker: 1), succeeded: true, now: at(17))
        #expect(schedule.isUpToDate(1))
        #expect(schedule.due(now: at(60)) == [.heartbeat(tracker: 0)])
    }

    @Test func aRenewedCertificateIsAnnouncedEverywhereAtOnce() {
        var schedule = AnnounceSchedule(trackers: 2, heartbeatInterval: .seconds(60), now: start)
        for action in schedule.due(now: start) { schedule.finished(action, succeeded: true, now: start) }
        schedule.announceEverywhere(now: at(30))
        #expect(!schedule.isUpToDate(0) && !schedule.isUpToDate(1))
        #expect(schedule.due(now: at(30)) == [.announceAll(tracker: 0), .announceAll(tracker: 1)])
    }

    @Test func anAnnouncementRunningWhenTheCertificateChangesIsMadeAgain() {
        var schedule = AnnounceSchedule(trackers: 1, heartbeatInterval: .seconds(60), now: start)
        #expect(schedule.due(now: start) == [.announceAll(tracker: 0)])
        // The certificate changes while that announcement (under the old one) is still running.
        schedule.announceEverywhere(now: at(1))
        schedule.finished(.announceAll(tracker: 0), succeeded: true, now: at(2))
        #expect(!schedule.isUpToDate(0))
        #expect(schedule.due(now: at(2)) == [.announceAll(tracker: 0)])
        schedule.finished(.announceAll(tracker: 0), succeeded: true, now: at(3))
        #expect(schedule.isUpToDate(0))
    }

    @Test func aFailedHeartbeatLeadsToAFullAnnouncement() {
        var schedule = AnnounceSchedule(trackers: 1, heartbeatInterval: .seconds(5), now: start)
        for action in schedule.due(now: start) { schedule.finished(action, succeeded: true, now: start) }
        #expect(schedule.due(now: at(5)) == [.heartbeat(tracker: 0)])
        schedule.finished(.heartbeat(tracker: 0), succeeded: false, now: at(5))
        #expect(schedule.due(now: at(6)) == [.announceAll(tracker: 0)])
    }

    @Test func everyShareIsAnnouncedAgainPeriodically() {
        var schedule = AnnounceSchedule(trackers: 1, heartbeatInterval: .seconds(5), now: start)
        for action in schedule.due(now: start) { schedule.finished(action, succeeded: true, now: start) }
        var now: Int64 = 0
        var announcements = 0
        while now < 100 {
            now += 5
            for action in schedule.due(now: at(now)) {
                if case .announceAll = action { announcements += 1 }
                schedule.finished(action, succeeded: true, now: at(now))
            }
        }
        #expect(announcements == 2, "every ten heartbeat intervals")
    }
}
