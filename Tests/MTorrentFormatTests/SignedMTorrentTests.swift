import FileIO
import Foundation
@testable import MTorrentFormat
import PKI
import PKITesting
import Pieces
import Testing

@Suite struct SignedMTorrentTests {
    @Test func createdFileParsesAndVerifiesAsItsSigner() throws {
        let fixture = try Fixture()
        let parsed = try MTorrentParser.parse(fixture.bytes)
        let signer = try parsed.verify(trust: fixture.ca.trust())
        #expect(signer.name == "alice")
        #expect(signer.groups == ["lab"])
        #expect(parsed.name == "report.pdf")
        #expect(parsed.trackers == Fixture.trackers)
        #expect(parsed.layout == fixture.torrent.layout)
        #expect(parsed.pieceHashes == fixture.torrent.pieceHashes)
        #expect(parsed.rootHex == fixture.torrent.rootHex)
        #expect(try parsed.serialized() == fixture.bytes)
    }

    @Test func loadReadsVerifiesAndBoundsTheFile() throws {
        let fixture = try Fixture()
        let path = fixture.ca.folder.file("report.pdf.mtorrent")
        try FileIO.createExclusive(path, bytes: fixture.bytes, mode: 0o644)
        let (torrent, signer) = try MTorrent.load(from: path, trust: fixture.ca.trust())
        #expect(torrent.rootHex == fixture.torrent.rootHex)
        #expect(signer.name == "alice")
        #expect(throws: MTorrentError(.unreadable, "")) { try MTorrent.load(from: path + ".missing", trust: fixture.ca.trust()) }
    }

    @Test func everySingleByteChangeIsRefused() throws {
        let fixture = try Fixture()
        let trust = try fixture.ca.trust()
        var accepted: [Int] = []
        var reachedVerification = 0
        for index in fixture.bytes.indices {
            for flip: UInt8 in [0x01, 0x20, 0x80] {
                var changed = fixture.bytes
                changed[index] ^= flip
                guard let torrent = try? MTorrentParser.parse(changed) else { continue }
                reachedVerification += 1
                if (try? torrent.verify(trust: trust)) != nil { accepted.append(index) }
            }
        }
        #expect(accepted.isEmpty, "changes at byte offsets \(accepted) were accepted")
        // Changes inside the signature and certificate are well-formed text: the signature check must catch them.
        #expect(reachedVerification > 0)
    }

    @Test func aFileWithNoPiecesWorks() throws {
        let fixture = try Fixture(size: 0)
        #expect(fixture.torrent.layout.pieceCount == 0)
        #expect(try MTorrentParser.parse(fixture.bytes).verify(trust: fixture.ca.trust()).name == "alice")
    }

    @Test func onlyTheBaseNameIsRecorded() throws {
        let fixture = try Fixture(name: "nested-name.iso")
        #expect(fixture.torrent.name == "nested-name.iso")
        #expect(!fixture.text.contains(fixture.ca.folder.path))
    }

    @Test func aSignerFromAnotherCAIsRefused() throws {
        let fixture = try Fixture()
        let other = try TestAuthority()
        let error = try #require(throws: MTorrentError.self) { try MTorrentParser.parse(fixture.bytes).verify(trust: other.trust()) }
        #expect(error.code == .signerRefused)
        #expect(error.validation == ValidationError(.unknownAuthority, ""))
    }

    @Test func aRevokedSignerIsRefused() throws {
        let fixture = try Fixture()
        try fixture.ca.authority.revoke(name: "alice", reason: .keyCompromise)
        let error = try #require(throws: MTorrentError.self) { try MTorrentParser.parse(fixture.bytes).verify(trust: fixture.ca.trust()) }
        #expect(error.validation == ValidationError(.revoked, ""))
    }

    @Test func anExpiredSignerIsRefused() throws {
        let fixture = try Fixture()
        let error = try #require(throws: MTorrentError.self) {
            try MTorrentParser.parse(fixture.bytes).verify(trust: fixture.ca.trust(), at: Date() + 31 * 86400)
        }
        #expect(error.validation?.code == .expired || error.validation?.code == .revocationListExpired)
        try fixture.ca.authority.renewRevocationList(days: 90)
        let renewed = try #require(throws: MTorrentError.self) {
            try MTorrentParser.parse(fixture.bytes).verify(trust: fixture.ca.trust(), at: Date() + 31 * 86400)
        }
        #expect(renewed.validation == ValidationError(.expired, ""))
    }

    @Test func aTrackerRoleSignerIsRefused() throws {
        let fixture = try Fixture()
        let tracker = try fixture.ca.identity(.tracker(name: "t1", dnsNames: [], ipAddresses: [], days: 30))
        var content = fixture.torrent.content
        content.signer = tracker.certificate
        let forged = MTorrent(content: content, signature: try tracker.sign(content.signedBytes()))
        let error = try #require(throws: MTorrentError.self) { try MTorrentParser.parse(forged.serialized()).verify(trust: fixture.ca.trust()) }
        #expect(error.validation == ValidationError(.wrongRole, ""))
    }

    @Test func anotherPeersSignatureOverTheSameContentIsRefused() throws {
        let fixture = try Fixture()
        let bob = try fixture.ca.peer("bob")
        let forged = MTorrent(content: fixture.torrent.content, signature: try bob.sign(fixture.torrent.content.signedBytes()))
        #expect(throws: MTorrentError(.signatureInvalid, "")) { try MTorrentParser.parse(forged.serialized()).verify(trust: fixture.ca.trust()) }
    }

    @Test func creatingWithARevokedCertificateIsRefused() throws {
        let fixture = try Fixture()
        try fixture.ca.authority.revoke(name: "alice")
        #expect(throws: MTorrentError(.signerRefused, "")) {
            try MTorrent.create(fileAt: fixture.dataPath, trackers: Fixture.trackers, identity: fixture.alice, trust: fixture.ca.trust())
        }
    }

    @Test(arguments: [".", "..", "line\nbreak", " lead", "back\\slash"])
    func creatingFromAFileWithAnUnsafeNameIsRefused(name: String) throws {
        let fixture = try Fixture()
        #expect(throws: MTorrentError(.badName, "")) {
            try MTorrent.create(fileAt: fixture.ca.folder.file(name), trackers: Fixture.trackers, identity: fixture.alice, trust: fixture.ca.trust())
        }
    }
}
