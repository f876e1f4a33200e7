import Foundation
import PKI
import PKITesting
import Testing

/// The real `mtca` and `mtorrent` binaries, checked against OpenSSL's own verdicts.
@Suite struct ToolsTests {
    private let folder = TemporaryFolder()

    private func mtca(_ arguments: String...) throws -> Command.Result {
        try Command.product("mtca", arguments, in: folder.path)
    }

    private func mtorrent(_ arguments: String...) throws -> Command.Result {
        try Command.product("mtorrent", arguments, in: folder.path)
    }

    private func opensslVerify(_ name: String) throws -> Command.Result {
        try Command.system("openssl", ["verify", "-CAfile", "pki/ca.crt", "-crl_check", "-CRLfile", "pki/crl.pem", "pki/issued/\(name).crt"], in: folder.path)
    }

    @Test(arguments: ["mtca", "mtorrent", "tracker", "peer"])
    func everyProgramSaysItsVersion(_ program: String) throws {
        let result = try Command.product(program, ["--version"], in: folder.path)
        #expect(result.status == 0)
        #expect(result.output == Release.version + "\n", "\(result.output)\(result.errors)")
    }

    @Test func initTwiceFailsAndLeavesTheCAAsItWas() throws {
        #expect(try mtca("init", "--name", "Example Org CA").status == 0)
        let before = try String(contentsOfFile: folder.file("pki/ca.crt"), encoding: .utf8)
        let again = try mtca("init")
        #expect(again.status != 0)
        #expect(again.errors.contains("already exists"))
        #expect(try String(contentsOfFile: folder.file("pki/ca.crt"), encoding: .utf8) == before)
    }

    @Test func opensslAcceptsALiveCertificateAndRejectsARevokedOne() throws {
        #expect(try mtca("init").status == 0)
        #expect(try mtca("issue", "tracker", "t1", "--ip", "127.0.0.1").status == 0)
        #expect(try mtca("issue", "--pki", "./pki", "peer", "alice", "--group", "lab").status == 0)
        #expect(try mtca("issue", "peer", "bob").status == 0)
        for name in ["t1", "alice", "bob"] {
            let verdict = try opensslVerify(name)
            #expect(verdict.status == 0, "\(name): \(verdict.output) \(verdict.errors)")
        }
        let revoked = try mtca("revoke", "alice", "--reason", "keyCompromise")
        #expect(revoked.status == 0)
        let verdict = try opensslVerify("alice")
        #expect(verdict.status != 0)
        #expect((verdict.output + verdict.errors).contains("certificate revoked"))
        #expect(try opensslVerify("bob").status == 0)
        let list = try mtca("list")
        #expect(list.output.contains("revoked"))
        #expect(list.output.contains("CRL #2"))
    }

    @Test func mtorrentCreatesAndVerifiesAndRefusesATamperedFile() throws {
        #expect(try mtca("init").status == 0)
        #expect(try mtca("issue", "peer", "alice").status == 0)
        try Data(repeating: 7, count: 300_000).write(to: URL(fileURLWithPath: folder.file("data.bin")))
        let created = try mtorrent("create", "data.bin", "--name", "alice", "--tracker", "127.0.0.1:7001", "--tracker", "127.0.0.1:7002")
        #expect(created.status == 0, "\(created.errors)")
        let verified = try mtorrent("verify", "data.bin.mtorrent")
        #expect(verified.status == 0)
        #expect(verified.output.contains("signed by peer alice"))
        #expect(try mtorrent("create", "data.bin", "--name", "alice", "--tracker", "127.0.0.1:7001").status != 0)
        var text = try String(contentsOfFile: folder.file("data.bin.mtorrent"), encoding: .utf8)
        text = text.replacingOccurrences(of: "name data.bin", with: "name data.bim")
        try text.write(toFile: folder.file("tampered.mtorrent"), atomically: true, encoding: .utf8)
        let refused = try mtorrent("verify", "tampered.mtorrent")
        #expect(refused.status != 0)
        #expect(refused.errors.contains("signature does not match"))
    }
}
