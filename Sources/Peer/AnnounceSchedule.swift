import NIOCore

/// When a peer talks to each tracker on its own, besides the user's commands: it announces every
/// share to a tracker that has not heard them (at start, and again whenever the tracker failed to
/// answer, so a tracker that comes back learns every share made while it was away), refreshes all
/// of them periodically, and sends heartbeats in between. A pure state machine: time and the
/// outcome of each action come in, the actions due go out; the caller runs them.
struct AnnounceSchedule {
    /// What to send to one tracker.
    enum Action: Equatable {
        /// SHARE every file this peer serves (idempotent at the tracker).
        case announceAll(tracker: Int)
        /// HEARTBEAT: every entry of this peer is still there.
        case heartbeat(tracker: Int)

        var tracker: Int {
            switch self {
            case .announceAll(let tracker), .heartbeat(let tracker): return tracker
            }
        }
    }

    /// Seconds between heartbeats.
    let heartbeatInterval: TimeAmount
    /// Seconds between full re-announcements to a tracker that answers.
    let refreshInterval: TimeAmount
    /// First wait before announcing again to a tracker that failed; doubles up to the heartbeat interval.
    let firstRetry: TimeAmount

    private struct TrackerState {
        /// The tracker may lack some of our shares: announce them all at the next attempt.
        var needsAnnouncement = true
        /// An action to it is running.
        var busy = false
        /// Everything must be announced again even if the running announcement succeeds (it may
        /// have gone out under the certificate this peer just replaced).
        var announceAfterRun = false
        var nextAttempt: NIODeadline
        var retry: TimeAmount
        var nextHeartbeat: NIODeadline
        var nextRefresh: NIODeadline
    }

    private var trackers: [TrackerState]

    init(trackers count: Int, heartbeatInterval: TimeAmount, now: NIODeadline, firstRetry: TimeAmount = .seconds(1)) {
        self.heartbeatInterval = heartbeatInterval
        refreshInterval = heartbeatInterval * 10
        self.firstRetry = min(firstRetry, heartbeatInterval)
        trackers = Array(
            repeating: TrackerState(nextAttempt: now, retry: min(firstRetry, heartbeatInterval), nextHeartbeat: now, nextRefresh: now),
            count: count
        )
    }

    /// The actions due at `now`; each is marked running until ``finished(_:succeeded:now:)``.
    mutating func due(now: NIODeadline) -> [Action] {
        var actions: [Action] = []
        for index in trackers.indices where !trackers[index].busy {
            let state = trackers[index]
            if state.needsAnnouncement {
                guard now >= state.nextAttempt else { continue }
                actions.append(.announceAll(tracker: index))
            } else if now >= state.nextRefresh {
                actions.append(.announceAll(tracker: index))
            } else if now >= state.nextHeartbeat {
                actions.append(.heartbeat(tracker: index))
            } else {
                continue
            }
            trackers[index].busy = true
        }
        return actions
    }

    /// Records how an action ended: `succeeded` means the tracker answered every request.
    mutating func finished(_ action: Action, succeeded: Bool, now: NIODeadline) {
        let index = action.tracker
        trackers[index].busy = false
        let stale = trackers[index].announceAfterRun
        trackers[index].announceAfterRun = false
        if succeeded {
            if case .announceAll = action, !stale {
                trackers[index].needsAnnouncement = false
                trackers[index].nextRefresh = now + refreshInterval
                trackers[index].retry = firstRetry
            }
            trackers[index].nextHeartbeat = now + heartbeatInterval
        } else {
            trackerFailed(index, now: now)
        }
    }

    /// Every tracker is to hear every share again now: this peer's certificate changed, and
    /// trackers list holders by certificate.
    mutating func announceEverywhere(now: NIODeadline) {
        for index in trackers.indices {
            trackers[index].needsAnnouncement = true
            trackers[index].nextAttempt = now
            trackers[index].retry = firstRetry
            trackers[index].announceAfterRun = trackers[index].busy
        }
    }

    /// A request of a command found the tracker unreachable: it may miss what happened meanwhile.
    mutating func trackerFailed(_ index: Int, now: NIODeadline) {
        if trackers[index].needsAnnouncement {
            trackers[index].retry = min(trackers[index].retry * 2, heartbeatInterval)
        }
        trackers[index].needsAnnouncement = true
        trackers[index].nextAttempt = now + trackers[index].retry
    }

    /// Whether the tracker is thought to hold every share of this peer.
    func isUpToDate(_ index: Int) -> Bool {
        !trackers[index].needsAnnouncement
    }
}
