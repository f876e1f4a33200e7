import Foundation
import NIOCore
import NIOPosix
import Peer
import Testing
import Tracker
import Wire

/// Each limit of the tracker: a misbehaving client on 127.0.0.1 hits it while an honest peer is served.
@Suite(.serialized) struct TrackerLimitTests {
    private func honestPeerIsServed(_ fixture: TrackerFixture) async throws {
        let answer = try await fixture.client("bob").send(.get(file: fileA))
        #expect(answer == .failure(code: .fileNotFound, message: "no peer shares \(fileA)"))
    }

    @Test func oneCertificateCannotHoldMoreThanItsConnections() async throws {
        let fixture = try TrackerFixture { $0.maximumConnectionsPerPeer = 2 }
        let first = try RawLineClient(fixture: fixture, name: "alice")
        let second = try RawLineClient(fixture: fixture, name: "alice")
        #expect(try await first.exchange("GET \(fileA)").hasPrefix("ERR FILE_NOT_FOUND"))
        #expect(try await second.exchange("GET \(fileA)").hasPrefix("ERR FILE_NOT_FOUND"))
        let third = try RawLineClient(fixture: fixture, name: "alice")
        await #expect(throws: (any Error).self) { try await third.exchange("GET \(fileA)") }
        try await honestPeerIsServed(fixture)
        #expect(try await first.exchange("GET \(fileA)").hasPrefix("ERR FILE_NOT_FOUND"))
    }

    @Test func connectionsThatNeverHandshakeAreClosedAndTheirPlacesFreed() async throws {
        let fixture = try TrackerFixture {
            $0.maximumConnections = 4
            // Long enough that the silent connections still hold every place when this test runs
            // again: blocking end-to-end tests in the same process can hold up its task for seconds.
            $0.handshakeTimeout = 30
        }
        // Four plain TCP connections that send nothing take every place.
        var silent: [Channel] = []
        for _ in 0..<4 {
            silent.append(try await ClientBootstrap(group: fixture.group).connect(host: "127.0.0.1", port: Int(fixture.address.port)).get())
        }
        // Wait (bounded) until the tracker has taken all four in: on a busy machine that takes a while.
        let admitted = ContinuousClock.now + .seconds(10)
        while fixture.server.openConnections < 4, ContinuousClock.now < admitted { try await Task.sleep(for: .milliseconds(20)) }
        #expect(fixture.server.openConnections == 4)
        await #expect(throws: TrackerUnreachable.self) { try await fixture.client("bob").send(.get(file: fileA)) }
        // The handshake timeout closes them; then the honest peer gets in.
        for channel in silent { try await channel.closeFuture.get() }
        try await honestPeerIsServed(fixture)
    }

    @Test func anIdleConnectionIsClosed() async throws {
        let fixture = try TrackerFixture { $0.idleTimeout = 3 }
        let idle = try RawLineClient(fixture: fixture, name: "alice")
        #expect(try await idle.exchange("GET \(fileA)").hasPrefix("ERR FILE_NOT_FOUND"))
        try await idle.channel.closeFuture.get()
        try await honestPeerIsServed(fixture)
    }

    @Test func aClientThatDoesNotReadItsAnswersIsNotReadFrom() async throws {
        let fixture = try TrackerFixture()
        let greedy = try RawLineClient(fixture: fixture, name: "alice")
        #expect(try await greedy.exchange("GET \(fileA)").hasPrefix("ERR FILE_NOT_FOUND"))
        let channel = greedy.channel
        try await channel.setOption(ChannelOptions.autoRead, value: false).get()
        // 200,000 requests whose answers (about 20 MB) are more than the sockets between the two
        // can hold. A tracker that kept reading would take them all in a few seconds, the client's
        // outgoing buffer would empty and it would be writable again; it stays full instead.
        let batch = String(repeating: "GET \(fileA)\n", count: 1000)
        for _ in 0..<200 { channel.writeAndFlush(channel.allocator.buffer(string: batch), promise: nil) }
        var drained = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !drained, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            drained = try await channel.eventLoop.submit { channel.isWritable }.get()
        }
        #expect(!drained, "the tracker kept reading requests whose answers nobody read")
        try await honestPeerIsServed(fixture)
        try await channel.close()
    }

    @Test func anInsiderAnnouncingOneFileAtManyPortsIsOneHolder() async throws {
        let fixture = try TrackerFixture()
        let insider = try RawLineClient(fixture: fixture, name: "alice")
        let proof = try fixture.signedHeader(fileA, size: 10, signedBy: "alice")
        for port in 1...300 {
            #expect(try await insider.exchange(TrackerRequest.share(file: fileA, port: UInt16(port), proof: proof).line).hasPrefix("OK"))
        }
        #expect(try await fixture.client("bob").send(.share(file: fileA, port: 7000, proof: proof)) == .ok("shared \(fileA) from 127.0.0.1:7000"))
        guard case .holders(_, _, let holders) = try await fixture.client("carol").send(.get(file: fileA)) else {
            Issue.record("the file has no holders")
            return
        }
        #expect(holders.map(\.address).sorted() == ["127.0.0.1:300", "127.0.0.1:7000"])
    }

    @Test func anInsiderSharingMoreFilesThanItsQuotaIsRefusedAndOthersAreServed() async throws {
        let fixture = try TrackerFixture { $0.maximumFilesPerPeer = 5 }
        let insider = try RawLineClient(fixture: fixture, name: "alice")
        for index in 0...5 {
            let file = FileID(hex: String(format: "%064x", index))!
            let answer = try await insider.exchange(try fixture.share(file, name: "f", port: 6001, signedBy: "alice").line)
            #expect(answer.hasPrefix(index < 5 ? "OK" : "ERR QUOTA"), "share \(index): \(answer)")
        }
        #expect(try await fixture.client("bob").send(try fixture.share(fileA, port: 7000, signedBy: "bob")) == .ok("shared \(fileA) from 127.0.0.1:7000"))
        guard case .holders = try await fixture.client("carol").send(.get(file: fileA)) else {
            Issue.record("the honest share is not listed")
            return
        }
    }
}
