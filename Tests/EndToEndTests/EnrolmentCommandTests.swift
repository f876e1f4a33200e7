import Foundation
import PKI
import PKITesting
import Testing

/// `mtca request`, `sign`, `bundle`, `renew`, `revoke`, `list` and `crl` as a person runs them: one
/// folder per simulated machine, nothing copied by hand.
@Suite(.serialized) struct EnrolmentCommandTests {
    private let folder = TemporaryFolder()

    private func mtca(_ arguments: String..., input: String? = nil) throws -> Command.Result {
        try Command.product("mtca", arguments, in: folder.path, input: input)
    }

    private func expectSuccess(_ result: Command.Result, _ what: String) {
        #expect(result.status == 0, "\(what): \(result.output) \(result.errors)")
    }

    /// A request made on the machine folder `machine` for the peer `name`, written to `name.csr`.
    private func requestPeer(_ name: String, machine: String) throws {
        expectSuccess(try mtca("request", "--pki", machine, "peer", name, "--group", "lab"), "request \(name)")
    }

    private func opensslVerify(_ certificate: String) throws -> Command.Result {
        try Command.system("openssl", ["verify", "-CAfile", "ca/ca.crt", "-crl_check", "-CRLfile", "ca/crl.pem", certificate], in: folder.path)
    }

    @Test func machinesEnrolledByRequestShareAndGetFromTheirBundles() throws {
        expectSuccess(try mtca("init", "--pki", "ca"), "init")
        expectSuccess(try mtca("request", "--pki", "t1", "tracker", "tracker1", "--ip", "127.0.0.1", "-o", "t1.csr"), "request tracker1")
        expectSuccess(try mtca("sign", "--pki", "ca", "t1.csr", "--yes"), "sign tracker1")
        expectSuccess(try mtca("bundle", "--pki", "ca", "tracker1", "-o", "t1"), "bundle tracker1")
        try requestPeer("alice", machine: "alice")
        expectSuccess(try mtca("sign", "--pki", "ca", "alice.csr", "--yes"), "sign alice")
        // As README step 1 says: a bundle folder of public files, copied next to the machine's key.
        expectSuccess(try mtca("bundle", "--pki", "ca", "alice", "-o", "alice-bundle"), "bundle alice")
        expectSuccess(try Command.system("cp", ["-r", "alice-bundle/.", "alice/"], in: folder.path), "copy alice's bundle")
        expectSuccess(try mtca("issue", "--pki", "ca", "peer", "bob"), "issue bob")
        expectSuccess(try mtca("bundle", "--pki", "ca", "bob", "-o", "bob"), "bundle bob")
        #expect(try FolderSnapshot(of: folder.file("ca")).paths(endingWith: ".key") == ["ca.key", "issued/bob.key"])
        for machine in ["t1", "alice", "bob"] {
            #expect(try FolderSnapshot(of: folder.file(machine)).paths(endingWith: ".key").count == 1, "\(machine)")
        }

        try Data((0..<1_500_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 7) }).write(to: URL(fileURLWithPath: folder.file("data.bin")))
        let tracker = try TrackerProcess(
            folder: folder.path, arguments: ["--pki", folder.file("t1"), "--name", "tracker1", "--data", folder.file("t1-data")]
        )
        defer { tracker.stop() }
        let trackers = [tracker.address.description, "127.0.0.1:1"]
        let alice = try PeerProcess(folder: folder.path, name: "alice", trackers: trackers, pki: folder.file("alice"))
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS: shared data.bin"))
        let bob = try PeerProcess(folder: folder.path, name: "bob", trackers: trackers, pki: folder.file("bob"))
        #expect(try bob.run("get data.mtorrent copy.bin").hasPrefix("SUCCESS: downloaded data.bin to copy.bin"))
        #expect(FileManager.default.contentsEqual(atPath: folder.file("data.bin"), andPath: folder.file("copy.bin")))
        #expect(bob.finish() == 0)
        #expect(alice.finish() == 0)
    }

    @Test func aRequestAlteredOnTheWayIsRefusedAndTheCAFolderStaysAsItWas() throws {
        expectSuccess(try mtca("init", "--pki", "ca"), "init")
        try requestPeer("alice", machine: "alice")
        let lines = try String(contentsOfFile: folder.file("alice.csr"), encoding: .utf8).split(separator: "\n")
        var der = try #require(Data(base64Encoded: lines.filter { !$0.hasPrefix("-----") }.joined()))
        let name = Data("alice".utf8)
        let at = try #require(der.range(of: name)).lowerBound
        der[at + 4] ^= 0x01  // "alicd": the same length, so only the signature can tell.
        let body = der.base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        try "-----BEGIN CERTIFICATE REQUEST-----\n\(body)\n-----END CERTIFICATE REQUEST-----\n".write(
            toFile: folder.file("tampered.csr"), atomically: true, encoding: .utf8
        )
        let before = try FolderSnapshot(of: folder.file("ca"))
        let refused = try mtca("sign", "--pki", "ca", "tampered.csr", "--yes")
        #expect(refused.status == 1)
        #expect(refused.errors.contains("signature does not match"), "\(refused.errors)")
        #expect(try FolderSnapshot(of: folder.file("ca")) == before)
    }

    @Test func requestsOutsideTheProfileAreRefusedAndOpenSSLRequestsInItAreSigned() throws {
        expectSuccess(try mtca("init", "--pki", "ca"), "init")
        func opensslRequest(_ file: String, subject: String, extra: [String] = []) throws {
            let made = try Command.system(
                "openssl",
                ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "\(file).key", "-subj", subject, "-out", "\(file).csr"] + extra,
                in: folder.path
            )
            #expect(made.status == 0, "\(made.errors)")
        }
        try opensslRequest("peer-with-ip", subject: "/CN=mallory/OU=peer", extra: ["-addext", "subjectAltName=IP:10.0.0.1"])
        try opensslRequest("tracker-with-group", subject: "/CN=t9/OU=tracker/O=admins", extra: ["-addext", "subjectAltName=DNS:t9.example"])
        try opensslRequest("bad-name", subject: "/CN=mal lory/OU=peer")
        try opensslRequest("extension", subject: "/CN=mallory/OU=peer", extra: ["-addext", "basicConstraints=critical,CA:TRUE"])
        let before = try FolderSnapshot(of: folder.file("ca"))
        for (file, because) in [
            ("peer-with-ip", "carries no DNS names or IP addresses"), ("tracker-with-group", "carries no groups"),
            ("bad-name", "may contain only"), ("extension", "extensions other than a subjectAltName"),
        ] {
            let refused = try mtca("sign", "--pki", "ca", "\(file).csr", "--yes")
            #expect(refused.status == 1, "\(file)")
            #expect(refused.errors.contains(because), "\(file): \(refused.errors)")
        }
        #expect(try FolderSnapshot(of: folder.file("ca")) == before)
        try opensslRequest("carol", subject: "/CN=carol/OU=peer/O=lab")
        expectSuccess(try mtca("sign", "--pki", "ca", "carol.csr", "--yes"), "sign carol")
        expectSuccess(try opensslVerify("ca/issued/carol.crt"), "verify carol")
    }

    @Test func signingAsksAndOnlyYesWrites() throws {
        expectSuccess(try mtca("init", "--pki", "ca"), "init")
        try requestPeer("alice", machine: "alice")
        let before = try FolderSnapshot(of: folder.file("ca"))
        for answer in ["n\n", "", "yes please\n"] {
            let declined = try mtca("sign", "--pki", "ca", "alice.csr", input: answer)
            #expect(declined.status == 1, "answer \(answer.debugDescription)")
            #expect(declined.output.contains("name    alice") && declined.output.contains("groups  lab"))
            #expect(declined.errors.contains("Not signed; nothing was written."))
            #expect(try FolderSnapshot(of: folder.file("ca")) == before)
        }
        expectSuccess(try mtca("sign", "--pki", "ca", "alice.csr", input: "y\n"), "sign alice")
        #expect(FileManager.default.fileExists(atPath: folder.file("ca/issued/alice.crt")))
    }

    @Test func requestNeverReplacesAKey() throws {
        try requestPeer("alice", machine: "alice")
        let before = try FolderSnapshot(of: folder.path)
        let again = try mtca("request", "--pki", "alice", "peer", "alice", "-o", "again.csr")
        #expect(again.status == 1)
        #expect(again.errors.contains("exists already"), "\(again.errors)")
        #expect(try FolderSnapshot(of: folder.path) == before)
    }

    @Test func renewalKeepsBothValidRevokingTheNameEndsBothAndListMarksExpiry() throws {
        expectSuccess(try mtca("init", "--pki", "ca"), "init")
        expectSuccess(try mtca("issue", "--pki", "ca", "peer", "bob"), "issue bob")
        expectSuccess(try mtca("renew", "--pki", "ca", "bob", "--days", "200"), "renew bob")
        let archived = try FolderSnapshot(of: folder.file("ca")).paths(endingWith: ".crt").filter { $0.hasPrefix("issued/archive/bob-") }
        #expect(archived.count == 1)
        for certificate in ["ca/issued/bob.crt"] + archived.map({ "ca/\($0)" }) {
            expectSuccess(try opensslVerify(certificate), "verify \(certificate)")
        }
        expectSuccess(try mtca("issue", "--pki", "ca", "peer", "soon", "--days", "5"), "issue soon")
        let list = try mtca("list", "--pki", "ca")
        let rows = list.output.split(separator: "\n")
        #expect(rows.filter { $0.hasPrefix("bob ") && $0.hasSuffix("valid") }.count == 2, "\(list.output)")
        #expect(rows.contains { $0.hasPrefix("soon ") && $0.contains(" expiring in ") }, "\(list.output)")
        #expect(list.output.contains("WARNING, expiring within 14 days: soon ("))
        #expect(rows.contains { $0.hasPrefix("CRL #1 valid until") })

        let revoked = try mtca("revoke", "--pki", "ca", "bob", "--reason", "superseded")
        expectSuccess(revoked, "revoke bob")
        #expect(revoked.output.contains("Revoked 2 certificate(s) of 'bob'"))
        for certificate in ["ca/issued/bob.crt"] + archived.map({ "ca/\($0)" }) {
            let verdict = try opensslVerify(certificate)
            #expect(verdict.status != 0 && (verdict.output + verdict.errors).contains("certificate revoked"), "\(certificate)")
        }
        let after = try mtca("list", "--pki", "ca").output.split(separator: "\n")
        #expect(after.filter { $0.hasPrefix("bob ") && $0.contains("revoked") }.count == 2)

        try requestPeer("alice", machine: "alice")
        expectSuccess(try mtca("sign", "--pki", "ca", "alice.csr", "--yes"), "sign alice")
        let renewal = try mtca("renew", "--pki", "ca", "alice")
        #expect(renewal.status == 1)
        #expect(renewal.errors.contains("--reuse-key"), "\(renewal.errors)")
        expectSuccess(try mtca("request", "--pki", "alice", "peer", "alice", "--group", "lab", "--reuse-key", "-o", "renew.csr"), "request renewal")
        expectSuccess(try mtca("sign", "--pki", "ca", "renew.csr", "--yes"), "sign renewal")
        #expect(try mtca("list", "--pki", "ca").output.split(separator: "\n").filter { $0.hasPrefix("alice ") && $0.hasSuffix("valid") }.count == 2)
    }

    @Test func crlFromATimerReplacesTheFileWholeWithAGrowingNumber() throws {
        expectSuccess(try mtca("init", "--pki", "ca"), "init")
        let path = folder.file("ca/crl.pem")
        func state() throws -> (number: Int, inode: UInt64) {
            let list = try RevocationList(pemEncoded: String(contentsOfFile: path, encoding: .utf8))
            let inode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? UInt64)
            return (list.number, inode)
        }
        var previous = try state()
        for _ in 0..<2 {
            let run = try mtca("crl", "--pki", "ca")
            expectSuccess(run, "crl")
            let now = try state()
            #expect(now.number == previous.number + 1)
            #expect(now.inode != previous.inode)
            #expect(run.output.contains("Signed CRL #\(now.number)"))
            previous = now
        }
        #expect(try FolderSnapshot(of: folder.file("ca")).files.keys.filter { $0.contains("tmp") }.isEmpty)
        let before = try FolderSnapshot(of: folder.file("ca"))
        #expect(try mtca("crl", "--pki", "ca", "--days", "0").status == 1)
        #expect(try mtca("crl", "--pki", "nowhere").status == 1)
        #expect(try mtca("crl", "--pki", "ca", "--days", "many").status == 64)
        #expect(try FolderSnapshot(of: folder.file("ca")) == before)
    }
}
