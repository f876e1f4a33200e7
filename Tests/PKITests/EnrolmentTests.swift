import Crypto
import FileIO
import Foundation
import PKI
import PKITesting
import SwiftASN1
import Testing
import X509

/// Enrolment by request and signature, bundles, renewal, revocation by name or serial, CRL numbers.
@Suite struct EnrolmentTests {
    private let ca: TestAuthority
    private let machine = TemporaryFolder()
    private var machineLayout: PKILayout { PKILayout(folder: machine.file("pki")) }

    init() throws {
        ca = try TestAuthority()
    }

    /// A request made on the machine, with its key in the machine's folder.
    private func request(_ request: IssueRequest, file: String = "request.csr", reusingKey: Bool = false) throws -> SigningRequest {
        try Enrolment.request(request, in: machineLayout, writingTo: machine.file(file), reusingKey: reusingKey)
        return try CertificateAuthority.readRequest(at: machine.file(file))
    }

    private static func subject(_ attributes: [(ASN1ObjectIdentifier, String)]) throws -> DistinguishedName {
        DistinguishedName(try attributes.map { RelativeDistinguishedName(try .init(type: $0.0, utf8String: $0.1)) })
    }

    /// The PEM text of a request built directly, outside our profile's builder.
    private static func rawRequest(
        subject: DistinguishedName, key: Certificate.PrivateKey = CertificateProfile.makePrivateKey(),
        extensions: Certificate.Extensions? = nil, extraAttributes: [CertificateSigningRequest.Attribute] = []
    ) throws -> String {
        var attributes = CertificateSigningRequest.Attributes(extraAttributes)
        if let extensions { attributes.insert(try CertificateSigningRequest.Attribute(ExtensionRequest(extensions: extensions))) }
        let csr = try CertificateSigningRequest(
            version: .v1, subject: subject, privateKey: key, attributes: attributes, signatureAlgorithm: .ecdsaWithSHA256
        )
        return try csr.serializeAsPEM().pemString
    }

    @Test func aSignedRequestValidatesAndTheCAFolderNeverHoldsTheKey() throws {
        let signingRequest = try request(.peer(name: "alice", groups: ["lab", "ops"], days: 30))
        #expect(try FileIO.mode(of: machineLayout.privateKey(named: "alice")) == 0o600)
        let issued = try ca.authority.sign(signingRequest, days: 30)
        #expect(issued.keyPath == nil)
        #expect(try FolderSnapshot(of: ca.layout.folder).paths(endingWith: ".key") == ["ca.key"])
        let certificate = try TrustStore.loadCertificate(at: issued.certificatePath)
        let identity = try ca.trust().validate(certificate, as: .peer)
        #expect(identity.name == "alice" && identity.groups == ["lab", "ops"])
        let machineKey = try String(contentsOfFile: machineLayout.privateKey(named: "alice"), encoding: .utf8)
        #expect(try Certificate.PrivateKey(pemEncoded: machineKey).publicKey == certificate.publicKey)
    }

    @Test func aTrackerRequestCarriesItsNames() throws {
        let signingRequest = try request(.tracker(name: "t1", dnsNames: ["tracker.example"], ipAddresses: ["127.0.0.1", "::1"], days: 30))
        #expect(signingRequest.role == .tracker)
        #expect(signingRequest.dnsNames == ["tracker.example"])
        #expect(signingRequest.ipAddresses == ["127.0.0.1", "::1"])
        let certificate = try TrustStore.loadCertificate(at: try ca.authority.sign(signingRequest, days: 30).certificatePath)
        #expect(try ca.trust().validate(certificate, as: .tracker).name == "t1")
        #expect(try certificate.extensions.subjectAlternativeNames?.count == 3)
    }

    @Test func aRequestWithAlteredContentIsRefused() throws {
        try request(.peer(name: "alice", groups: [], days: 30))
        let document = try PEMDocument(pemString: String(contentsOfFile: machine.file("request.csr"), encoding: .utf8))
        var bytes = document.derBytes
        let name = Array("alice".utf8)
        let at = try #require((0...(bytes.count - name.count)).first { Array(bytes[$0..<$0 + name.count]) == name })
        bytes[at + 4] ^= 0x01  // "alicd": the same length, so the DER still reads.
        let tampered = PEMDocument(type: "CERTIFICATE REQUEST", derBytes: bytes).pemString
        let error = try #require(throws: PKIError.self) { try SigningRequest(pemEncoded: tampered) }
        #expect(error.code == .invalidRequest)
        #expect(error.reason.contains("signature does not match"))
    }

    /// What each request asks for, the words its refusal must hold, and how to make it.
    static let forbiddenRequests: [(String, String, @Sendable () throws -> String)] = [
        ("a peer with an IP address", "a peer certificate carries no DNS names", {
            try rawRequest(
                subject: try subject([(.RDNAttributeType.commonName, "mallory"), (.RDNAttributeType.organizationalUnitName, "peer")]),
                extensions: try Certificate.Extensions { SubjectAlternativeNames([.ipAddress(ASN1OctetString(contentBytes: [10, 0, 0, 1]))]) }
            )
        }),
        ("a tracker with a group", "a tracker certificate carries no groups", {
            try rawRequest(
                subject: try subject([
                    (.RDNAttributeType.commonName, "t9"), (.RDNAttributeType.organizationalUnitName, "tracker"),
                    (.RDNAttributeType.organizationName, "admins"),
                ]),
                extensions: try Certificate.Extensions { SubjectAlternativeNames([.dnsName("t9.example")]) }
            )
        }),
        ("a tracker without names", "must name the DNS names", {
            try rawRequest(subject: try subject([(.RDNAttributeType.commonName, "t9"), (.RDNAttributeType.organizationalUnitName, "tracker")]))
        }),
        ("a name with a slash", "may contain only", {
            try rawRequest(subject: try subject([(.RDNAttributeType.commonName, "../ca"), (.RDNAttributeType.organizationalUnitName, "peer")]))
        }),
        ("two roles", "exactly one role", {
            try rawRequest(
                subject: try subject([
                    (.RDNAttributeType.commonName, "mallory"), (.RDNAttributeType.organizationalUnitName, "peer"),
                    (.RDNAttributeType.organizationalUnitName, "tracker"),
                ])
            )
        }),
        ("an unexpected extension", "extensions other than a subjectAltName", {
            try rawRequest(
                subject: try subject([(.RDNAttributeType.commonName, "mallory"), (.RDNAttributeType.organizationalUnitName, "peer")]),
                extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)) }
            )
        }),
        ("an unexpected attribute", "attributes other than one extension request", {
            let challengePassword = CertificateSigningRequest.Attribute(oid: [1, 2, 840, 113549, 1, 9, 7], values: [try ASN1Any(erasing: ASN1UTF8String("secret"))])
            return try rawRequest(
                subject: try subject([(.RDNAttributeType.commonName, "mallory"), (.RDNAttributeType.organizationalUnitName, "peer")]),
                extraAttributes: [challengePassword]
            )
        }),
        ("a P-384 key", "P-256", {
            try rawRequest(
                subject: try subject([(.RDNAttributeType.commonName, "mallory"), (.RDNAttributeType.organizationalUnitName, "peer")]),
                key: Certificate.PrivateKey(P384.Signing.PrivateKey())
            )
        }),
        ("two PEM blocks", "exactly one PEM block", {
            let one = try rawRequest(subject: try subject([(.RDNAttributeType.commonName, "mallory"), (.RDNAttributeType.organizationalUnitName, "peer")]))
            return one + "\n" + one
        }),
    ]

    @Test(arguments: 0..<forbiddenRequests.count)
    func aRequestOutsideTheProfileIsRefused(index: Int) throws {
        let (what, because, make) = Self.forbiddenRequests[index]
        let error = try #require(throws: PKIError.self, "\(what)") { try SigningRequest(pemEncoded: try make()) }
        #expect(error.code == .invalidRequest, "\(what)")
        #expect(error.reason.contains(because), "\(what): \(error.reason)")
    }

    @Test func anOversizeRequestFileIsRefusedUnread() throws {
        try Data(repeating: 0x41, count: SigningRequest.maximumFileSize + 1).write(to: URL(fileURLWithPath: machine.file("big.csr")))
        #expect(throws: PKIError(.invalidRequest, "")) { try CertificateAuthority.readRequest(at: machine.file("big.csr")) }
    }

    @Test func requestNeverReplacesAKeyAndLeavesNothingWhenItFails() throws {
        try request(.peer(name: "alice", groups: [], days: 30))
        let before = try FolderSnapshot(of: machine.path)
        #expect(throws: PKIError(.fileExists, "")) { try request(.peer(name: "alice", groups: [], days: 30), file: "again.csr") }
        #expect(throws: PKIError(.fileExists, "")) { try request(.peer(name: "bob", groups: [], days: 30)) }
        #expect(try FolderSnapshot(of: machine.path) == before)
        #expect(throws: FileIOError.self) {
            try Enrolment.request(.peer(name: "bob", groups: [], days: 30), in: machineLayout, writingTo: machine.file("missing/bob.csr"), reusingKey: false)
        }
        #expect(try FolderSnapshot(of: machine.path) == before)
    }

    @Test func aRequestForTheSameKeyRenewsAndBothCertificatesStayValid() throws {
        let first = try ca.authority.sign(try request(.peer(name: "alice", groups: ["lab"], days: 30)), days: 30)
        let firstCertificate = try TrustStore.loadCertificate(at: first.certificatePath)
        let renewal = try request(.peer(name: "alice", groups: ["lab"], days: 30), file: "renew.csr", reusingKey: true)
        #expect(try ca.authority.liveCertificates(signing: renewal, days: 60).map(\.serial) == [first.entry.serial])
        let second = try ca.authority.sign(renewal, days: 60)
        let secondCertificate = try TrustStore.loadCertificate(at: second.certificatePath)
        #expect(secondCertificate.publicKey == firstCertificate.publicKey)
        #expect(FileIO.exists("\(ca.layout.archiveFolder)/alice-\(first.entry.serial).crt"))
        for certificate in [firstCertificate, secondCertificate] { #expect(try ca.trust().validate(certificate, as: .peer).name == "alice") }
        #expect(try ca.authority.report().certificates.map(\.serial) == [first.entry.serial, second.entry.serial])
    }

    @Test func theCAMachineEnrollingItselfKeepsItsKey() throws {
        let own = try Enrolment.request(.peer(name: "ca-host", groups: [], days: 30), in: ca.layout, writingTo: machine.file("own.csr"), reusingKey: false)
        let issued = try ca.authority.sign(own, days: 30)
        #expect(issued.keyPath == ca.layout.privateKey(named: "ca-host"))
        let identity = try SigningIdentity.load(named: "ca-host", from: ca.layout)
        #expect(try ca.trust().validate(identity.certificate, as: .peer).name == "ca-host")
    }

    @Test func theKeyOfARevokedCertificateIsNotSignedAgain() throws {
        try ca.authority.sign(try request(.peer(name: "alice", groups: [], days: 30)), days: 30)
        try ca.authority.revoke(name: "alice", reason: .keyCompromise)
        let sameKey = try request(.peer(name: "alice", groups: [], days: 30), file: "again.csr", reusingKey: true)
        let before = try FolderSnapshot(of: ca.layout.folder)
        #expect(throws: PKIError(.invalidRequest, "")) { try ca.authority.sign(sameKey, days: 30) }
        #expect(try FolderSnapshot(of: ca.layout.folder) == before)
        try FileIO.remove(machineLayout.privateKey(named: "alice"))
        let newKey = try request(.peer(name: "alice", groups: [], days: 30), file: "new.csr")
        #expect(try ca.authority.sign(newKey, days: 30).entry.name == "alice")
    }

    @Test func aNameKeepsItsRole() throws {
        try ca.identity(.tracker(name: "box", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        let asPeer = try request(.peer(name: "box", groups: [], days: 30))
        let before = try FolderSnapshot(of: ca.layout.folder)
        #expect(throws: PKIError(.nameInUse, "")) { try ca.authority.sign(asPeer, days: 30) }
        #expect(try FolderSnapshot(of: ca.layout.folder) == before)
    }

    @Test func renewKeepsTheKeyAndRevokingTheNameRevokesBoth() throws {
        let old = try ca.peer("bob", groups: ["lab"])
        let renewed = try ca.authority.renew(name: "bob", days: 60)
        let new = try SigningIdentity.load(named: "bob", from: ca.layout)
        #expect(new.privateKey.publicKey == old.privateKey.publicKey)
        #expect(new.certificate.serialNumber != old.certificate.serialNumber)
        #expect(renewed.entry.groups == ["lab"])
        for certificate in [old.certificate, new.certificate] { #expect(try ca.trust().validate(certificate, as: .peer).name == "bob") }
        let (revoked, list) = try ca.authority.revoke(name: "bob", reason: .superseded)
        #expect(revoked.count == 2)
        #expect(list.entries.count == 2)
        for certificate in [old.certificate, new.certificate] {
            #expect(throws: ValidationError(.revoked, "")) { try ca.trust().validate(certificate, as: .peer) }
        }
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.renew(name: "bob") }
    }

    @Test func aRenewalThatCannotBeRecordedLeavesTheFolderAsItWas() throws {
        try ca.peer("bob")
        let before = try FolderSnapshot(of: ca.layout.folder)
        // A folder where the ledger's temporary file goes makes saving the ledger fail.
        let blocker = "\(ca.layout.ledger).tmp-\(getpid())"
        try FileManager.default.createDirectory(atPath: blocker, withIntermediateDirectories: false)
        #expect(throws: FileIOError.self) { try ca.authority.renew(name: "bob", days: 60) }
        try FileManager.default.removeItem(atPath: blocker)
        #expect(try FolderSnapshot(of: ca.layout.folder) == before)
        #expect(try ca.authority.renew(name: "bob", days: 60).entry.name == "bob")
    }

    @Test func revokeBySerialRevokesOnlyThatCertificate() throws {
        let old = try ca.peer("bob")
        try ca.authority.renew(name: "bob", days: 60)
        let new = try SigningIdentity.load(named: "bob", from: ca.layout)
        let oldSerial = Hex.encode(old.certificate.serialNumber.bytes)
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.revoke(name: "bob", serial: "xyz") }
        #expect(throws: PKIError(.unknownName, "")) { try ca.authority.revoke(name: "alice", serial: String(oldSerial.prefix(12))) }
        let (revoked, _) = try ca.authority.revoke(name: "bob", serial: String(oldSerial.prefix(12)).uppercased(), reason: .superseded)
        #expect(revoked.map(\.serial) == [oldSerial])
        #expect(throws: ValidationError(.revoked, "")) { try ca.trust().validate(old.certificate, as: .peer) }
        #expect(try ca.trust().validate(new.certificate, as: .peer).name == "bob")
    }

    @Test func renewWithoutTheKeyAsksForANewRequest() throws {
        try ca.authority.sign(try request(.peer(name: "alice", groups: [], days: 30)), days: 30)
        let error = try #require(throws: PKIError.self) { try ca.authority.renew(name: "alice") }
        #expect(error.code == .keyNotHeld)
        #expect(error.reason.contains("--reuse-key"))
        #expect(throws: PKIError(.unknownName, "")) { try ca.authority.renew(name: "nobody") }
    }

    @Test func aBundleIsTheFolderAMachineLoads() throws {
        try ca.peer("bob")
        let target = PKILayout(folder: machine.file("bob"))
        let bundle = try ca.authority.bundle(name: "bob", into: target)
        #expect(bundle.key == .copiedFromAuthority)
        #expect(try FolderSnapshot(of: target.folder).files.keys.sorted() == ["ca.crt", "crl.pem", "issued/bob.crt", "issued/bob.key"])
        #expect(try FileIO.mode(of: target.privateKey(named: "bob")) == 0o600)
        let identity = try SigningIdentity.load(named: "bob", from: target)
        #expect(try TrustStore.load(from: target).validate(identity.certificate, as: .peer).name == "bob")
        let before = try FolderSnapshot(of: target.folder)
        #expect(throws: PKIError(.fileExists, "")) { try ca.authority.bundle(name: "bob", into: target) }
        #expect(try FolderSnapshot(of: target.folder) == before)
    }

    @Test func aBundleOfARequestedCertificateLeavesTheKeyWhereItIs() throws {
        try ca.authority.sign(try request(.peer(name: "alice", groups: [], days: 30)), days: 30)
        let elsewhere = try ca.authority.bundle(name: "alice", into: PKILayout(folder: machine.file("elsewhere")))
        #expect(elsewhere.key == .onTheMachine)
        #expect(try FolderSnapshot(of: machine.file("elsewhere")).paths(endingWith: ".key").isEmpty)
        let inPlace = try ca.authority.bundle(name: "alice", into: machineLayout)
        #expect(inPlace.key == .alreadyInFolder)
        let identity = try SigningIdentity.load(named: "alice", from: machineLayout)
        #expect(try TrustStore.load(from: machineLayout).validate(identity.certificate, as: .peer).name == "alice")
    }

    @Test func aBundleRefusesAForeignKeyAndARevokedName() throws {
        try ca.authority.sign(try request(.peer(name: "alice", groups: [], days: 30)), days: 30)
        let other = PKILayout(folder: machine.file("other"))
        try Enrolment.request(.peer(name: "alice", groups: [], days: 30), in: other, writingTo: machine.file("other.csr"), reusingKey: false)
        let before = try FolderSnapshot(of: other.folder)
        #expect(throws: PKIError(.badFile, "")) { try ca.authority.bundle(name: "alice", into: other) }
        #expect(try FolderSnapshot(of: other.folder) == before)
        try ca.authority.revoke(name: "alice")
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.bundle(name: "alice", into: PKILayout(folder: machine.file("fresh"))) }
        #expect(!FileIO.exists(machine.file("fresh/ca.crt")))
    }

    @Test func theCRLNumberNeverGoesBackEvenWithAnOlderLedger() throws {
        let savedLedger = try FileIO.readFile(ca.layout.ledger, limit: 1 << 20)
        let second = try ca.authority.renewRevocationList()
        let third = try ca.authority.renewRevocationList()
        #expect(third.number == second.number + 1)
        try FileIO.replaceAtomically(ca.layout.ledger, bytes: savedLedger, mode: 0o644)
        let fourth = try ca.authority.renewRevocationList()
        #expect(fourth.number == third.number + 1)
        #expect(try ca.trust().revocationList.number == fourth.number)
    }
}
