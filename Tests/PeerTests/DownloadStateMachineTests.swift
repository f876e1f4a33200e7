import Foundation
import NIOCore
import PKI
import PKITesting
import Pieces
import Testing
import Wire

@testable import Peer

/// The download's decisions, driven with made-up time and frames: no sockets, no sleeping.
@Suite struct DownloadStateMachineTests {
    typealias Machine = DownloadStateMachine<SplitMix>
    typealias Action = Machine.Action

    /// 16 KiB pieces, one block each.
    static let pieceSize = 16 * 1024
    let ca: TestAuthority
    let identities: [String: VerifiedIdentity]

    init() throws {
        ca = try TestAuthority()
        let trust = try ca.trust()
        var identities: [String: VerifiedIdentity] = [:]
        for name in ["alice", "bob", "carol"] {
            identities[name] = try trust.validate(try ca.peer(name).certificate, as: .peer)
        }
        self.identities = identities
    }

    func record(_ name: String, port: Int = 7000) -> HolderRecord {
        HolderRecord(address: "127.0.0.1:\(port + name.count)", name: name, fingerprint: identities[name]!.fingerprint)
    }

    /// A machine for a file of `pieces` pieces, and its clock.
    struct Harness {
        var machine: Machine
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        /// Every action so far, in order.
        var log: [Action] = []

        init(pieces: Int, resumed: [Int] = [], limits: PeerLimits = PeerLimits()) throws {
            let layout = try PieceLayout(fileSize: UInt64(pieces * pieceSize), pieceSize: pieceSize)
            var have = Bitfield(count: pieces)
            for piece in resumed { _ = have.insert(piece) }
            machine = Machine(layout: layout, file: FileID(bytes: Array(repeating: 7, count: 32))!, resumed: have, limits: limits, random: SplitMix(seed: 1), now: now)
        }

        @discardableResult
        mutating func on(_ event: Machine.Event) -> [Action] {
            let actions = machine.handle(event, now: now)
            log += actions
            return actions
        }

        /// Moves the clock on and ticks; a discovery it starts is answered with `found`.
        @discardableResult
        mutating func wait(_ seconds: Double, found: [HolderRecord] = []) -> [Action] {
            now = now + .nanoseconds(Int64(seconds * 1e9))
            var actions = on(.tick)
            if actions.contains(where: { if case .discover = $0 { true } else { false } }) { actions += on(.holdersDiscovered(found)) }
            return actions
        }

        /// The connection opened to `name` by these actions.
        static func connection(to name: String, in actions: [Action]) -> Int? {
            for case .connect(let id, let record) in actions where record.name == name { return id }
            return nil
        }

        /// The pieces requested on `id` by these actions.
        static func requests(on id: Int, in actions: [Action]) -> [Int] {
            var pieces: [Int] = []
            for case .send(let target, let frames) in actions where target == id {
                for case .request(let piece, _, _) in frames { pieces.append(Int(piece)) }
            }
            return pieces
        }

        static func closes(_ id: Int, in actions: [Action]) -> Bool {
            actions.contains { if case .close(id) = $0 { true } else { false } }
        }

        static func finished(_ actions: [Action]) -> Bool {
            actions.contains { if case .finish = $0 { true } else { false } }
        }

        static func failure(in actions: [Action]) -> CommandFailure? {
            for case .fail(let failure) in actions { return failure }
            return nil
        }

        /// Connects `id` as `identity` and has it send a bitfield of `pieces` (nil: every piece).
        mutating func join(_ id: Int, as identity: VerifiedIdentity, holding pieces: [Int]? = nil, of count: Int) -> [Action] {
            on(.connected(id, identity: identity))
            let bits = pieces.map { list in
                var bits = Bitfield(count: count)
                for piece in list { _ = bits.insert(piece) }
                return bits
            } ?? .full(count: count)
            return on(.frame(id, .bitfield(bits.bytes)))
        }

        /// The holder on `id` sends the whole of `piece`; returns the actions, the hash-and-write one included.
        mutating func deliver(_ piece: Int, on id: Int) -> [Action] {
            on(.frame(id, .piece(piece: UInt32(piece), offset: 0, data: ByteBuffer(repeating: 1, count: pieceSize))))
        }
    }

    @Test func aSeedIsAskedForEveryPieceAndTheDownloadFinishesWhenAllAreVerified() throws {
        var run = try Harness(pieces: 4)
        let alice = try #require(Harness.connection(to: "alice", in: run.on(.started([record("alice")]))))
        let asked = Harness.requests(on: alice, in: run.join(alice, as: identities["alice"]!, of: 4))
        #expect(asked.sorted() == [0, 1, 2, 3])
        var last: [Action] = []
        for piece in asked {
            let delivered = run.deliver(piece, on: alice)
            #expect(delivered.contains { if case .hashAndWrite(piece, _, alice) = $0 { true } else { false } })
            last = run.on(.pieceVerified(piece: piece, connection: alice))
        }
        #expect(Harness.finished(last))
        #expect(Harness.closes(alice, in: last), "the download closes its connections when it ends")
        #expect(run.machine.summary.piecesByHolder == ["alice": 4])
        #expect(run.machine.summary.fetchedBytes == UInt64(4 * Self.pieceSize))
    }

    @Test func inTheEndgameAFastHolderAlsoFetchesWhatASlowOneIsFetching() throws {
        var limits = PeerLimits()
        limits.requestsPerPeer = 1
        var run = try Harness(pieces: 2, limits: limits)
        let started = run.on(.started([record("alice"), record("bob")]))
        let alice = try #require(Harness.connection(to: "alice", in: started))
        let bob = try #require(Harness.connection(to: "bob", in: started))
        let first = Harness.requests(on: alice, in: run.join(alice, as: identities["alice"]!, of: 2))
        let slow = Harness.requests(on: bob, in: run.join(bob, as: identities["bob"]!, of: 2))
        #expect(first.count == 1 && slow.count == 1 && first != slow)
        // Once alice has sent her piece she has room, and every missing piece is being fetched.
        let afterFirst = run.deliver(first[0], on: alice) + run.on(.pieceVerified(piece: first[0], connection: alice))
        #expect(Harness.requests(on: alice, in: afterFirst) == slow, "alice also fetches the piece bob is slow with")
        _ = run.deliver(slow[0], on: alice)
        #expect(Harness.finished(run.on(.pieceVerified(piece: slow[0], connection: alice))))
        #expect(run.machine.summary.piecesByHolder == ["alice": 2])
    }

    @Test func aStalledHolderIsDroppedAndItsPiecesAreAskedOfAnother() throws {
        var limits = PeerLimits()
        limits.stallTimeout = 15
        var run = try Harness(pieces: 4, limits: limits)
        let alice = try #require(Harness.connection(to: "alice", in: run.on(.started([record("alice")]))))
        let stuck = Harness.requests(on: alice, in: run.join(alice, as: identities["alice"]!, of: 4))
        #expect(!stuck.isEmpty)
        #expect(!Harness.closes(alice, in: run.wait(14)))
        let late = run.wait(2, found: [record("alice"), record("bob")])
        #expect(Harness.closes(alice, in: late), "no answer for longer than the stall timeout")
        let bob = try #require(Harness.connection(to: "bob", in: run.log))
        run.on(.closed(alice, problem: nil))
        let reasked = Harness.requests(on: bob, in: run.join(bob, as: identities["bob"]!, of: 4))
        #expect(reasked.sorted() == [0, 1, 2, 3])
    }

    @Test func aHolderSendingACorruptPieceIsBannedAndNeverAskedAgain() throws {
        var run = try Harness(pieces: 2)
        let started = run.on(.started([record("alice"), record("bob")]))
        let alice = try #require(Harness.connection(to: "alice", in: started))
        let bob = try #require(Harness.connection(to: "bob", in: started))
        let fromAlice = Harness.requests(on: alice, in: run.join(alice, as: identities["alice"]!, of: 2))
        _ = run.join(bob, as: identities["bob"]!, holding: [], of: 2)
        _ = run.deliver(fromAlice[0], on: alice)
        let failed = run.on(.pieceFailed(piece: fromAlice[0], connection: alice))
        #expect(Harness.closes(alice, in: failed))
        #expect(failed.contains { if case .log(.error, _, _) = $0 { true } else { false } })
        #expect(run.machine.summary.banned == ["alice"])
        run.on(.closed(alice, problem: nil))
        let later = run.wait(10, found: [record("alice"), record("bob")])
        #expect(Harness.connection(to: "alice", in: later) == nil)
        // bob holds nothing and then cannot be reached: with alice banned, nobody can supply the file.
        run.on(.closed(bob, problem: "closed"))
        for _ in 0..<10 where Harness.failure(in: run.log) == nil {
            for case .connect(let id, _) in run.wait(5, found: [record("bob")]) { run.on(.closed(id, problem: "refused the connection")) }
        }
        #expect(Harness.failure(in: run.log)?.description.contains("banned for corrupt data: alice") == true)
    }

    @Test func aDownloadWithNoHolderLeftFailsWithWhatWasTried() throws {
        var run = try Harness(pieces: 2)
        var id = try #require(Harness.connection(to: "alice", in: run.on(.started([record("alice")]))))
        for attempt in 1...DownloadStateMachine<SplitMix>.attemptsPerHolder {
            let after = run.on(.closed(id, problem: "refused the connection"))
            if attempt == DownloadStateMachine<SplitMix>.attemptsPerHolder { break }
            #expect(Harness.failure(in: after) == nil)
            let retried = run.wait(Double(attempt) + 0.5, found: [record("alice")])
            id = try #require(Harness.connection(to: "alice", in: retried))
        }
        run.wait(1, found: [record("alice")])
        let failure = try #require(Harness.failure(in: run.log))
        #expect(failure.code == .downloadFailed)
        #expect(failure.description.contains("alice at 127.0.0.1:7005: refused the connection"), "\(failure)")
        #expect(!run.machine.isRunning)
        #expect(run.on(.tick).isEmpty, "an ended download does nothing more")
    }

    @Test func seedsAreSparedWhilePartialHoldersDeliver() throws {
        var limits = PeerLimits()
        limits.requestsPerPeer = 1
        var run = try Harness(pieces: 4, limits: limits)
        let started = run.on(.started([record("alice"), record("bob")]))
        let alice = try #require(Harness.connection(to: "alice", in: started))
        let bob = try #require(Harness.connection(to: "bob", in: started))
        // bob has pieces 0 and 1 and delivers one of them.
        let fromBob = Harness.requests(on: bob, in: run.join(bob, as: identities["bob"]!, holding: [0, 1], of: 4))
        _ = run.deliver(fromBob[0], on: bob)
        run.on(.pieceVerified(piece: fromBob[0], connection: bob))
        // alice, a seed, is asked only for what no partial holder has.
        let fromAlice = Harness.requests(on: alice, in: run.join(alice, as: identities["alice"]!, of: 4))
        #expect(fromAlice.count == 1 && [2, 3].contains(fromAlice[0]), "\(fromAlice)")
    }

    @Test func aHolderFoundLaterIsConnectedToo() throws {
        var run = try Harness(pieces: 4)
        let started = run.on(.started([record("alice")]))
        #expect(Harness.connection(to: "bob", in: started) == nil)
        let later = run.wait(0.3, found: [record("alice"), record("bob")])
        #expect(later.contains { if case .discover = $0 { true } else { false } }, "the trackers are asked again soon after the start")
        #expect(Harness.connection(to: "bob", in: later) != nil)
    }

    @Test func aHolderProvingAnotherIdentityIsClosedAndLeftAlone() throws {
        var run = try Harness(pieces: 2)
        let alice = try #require(Harness.connection(to: "alice", in: run.on(.started([record("alice")]))))
        let answer = run.on(.connected(alice, identity: identities["carol"]!))
        #expect(Harness.closes(alice, in: answer))
        #expect(!answer.contains { if case .send = $0 { true } else { false } }, "nothing is said to an impostor")
        run.on(.closed(alice, problem: nil))
        #expect(Harness.connection(to: "alice", in: run.wait(5, found: [record("alice")])) == nil)
    }

    @Test func aHolderSendingWhatOnlyDownloadersSendIsBanned() throws {
        var run = try Harness(pieces: 2)
        let alice = try #require(Harness.connection(to: "alice", in: run.on(.started([record("alice")]))))
        _ = run.join(alice, as: identities["alice"]!, of: 2)
        let answer = run.on(.frame(alice, .request(piece: 0, offset: 0, length: 16384)))
        #expect(Harness.closes(alice, in: answer))
        #expect(run.machine.summary.banned == ["alice"])
    }

    @Test func aNewRevocationListClosesTheConnectionsOfRevokedHolders() throws {
        var run = try Harness(pieces: 2)
        let started = run.on(.started([record("alice"), record("bob")]))
        let alice = try #require(Harness.connection(to: "alice", in: started))
        let bob = try #require(Harness.connection(to: "bob", in: started))
        _ = run.join(alice, as: identities["alice"]!, of: 2)
        _ = run.join(bob, as: identities["bob"]!, of: 2)
        _ = try ca.authority.revoke(name: "alice", reason: .keyCompromise)
        let answer = run.on(.trustChanged(try ca.trust()))
        #expect(Harness.closes(alice, in: answer))
        #expect(!Harness.closes(bob, in: answer))
    }

    @Test func aResumedDownloadFetchesOnlyWhatIsMissing() throws {
        var run = try Harness(pieces: 4, resumed: [0, 2])
        let alice = try #require(Harness.connection(to: "alice", in: run.on(.started([record("alice")]))))
        #expect(Harness.requests(on: alice, in: run.join(alice, as: identities["alice"]!, of: 4)).sorted() == [1, 3])
        #expect(run.machine.summary.resumedPieces == 2)
    }
}
