import FileIO
import Foundation
import PKI
import PKITesting
import SwiftASN1
import Testing
import X509

@Suite struct CertificateAuthorityTests {
    @Test func initCreatesTheCAFilesWithPrivateKeyModes() throws {
        let ca = try TestAuthority()
        #expect(try FileIO.mode(of: ca.layout.authorityKey) == 0o600)
        #expect(try FileIO.mode(of: ca.layout.authorityCertificate) == 0o644)
        let trust = try ca.trust()
        #expect(trust.revocationList.entries.isEmpty)
        #expect(trust.revocationList.number == 1)
        #expect(try trust.authority.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        let usage = try #require(try trust.authority.extensions.keyUsage)
        #expect(usage.keyCertSign && usage.cRLSign)
    }

    @Test func initRefusesAnExistingCAAndTouchesNothing() throws {
        let ca = try TestAuthority()
        let files = [ca.layout.authorityCertificate, ca.layout.authorityKey, ca.layout.revocationList, ca.layout.ledger]
        let before = try files.map { try FileIO.readFile($0, limit: 1 << 20) }
        #expect(throws: PKIError(.alreadyInitialized, "")) {
            try CertificateAuthority.initialize(at: ca.layout, name: "Second CA")
        }
        #expect(try files.map { try FileIO.readFile($0, limit: 1 << 20) } == before)
    }

    @Test func issuedPeerCarriesItsIdentityAndProfile() throws {
        let ca = try TestAuthority()
        let alice = try ca.peer("alice", groups: ["lab", "ops"])
        #expect(try FileIO.mode(of: ca.layout.privateKey(named: "alice")) == 0o600)
        let identity = try ca.trust().validate(alice.certificate, as: .peer)
        #expect(identity.name == "alice")
        #expect(identity.role == .peer)
        #expect(identity.groups == ["lab", "ops"])
        #expect(identity.fingerprint.count == 64)
        let extensions = alice.certificate.extensions
        #expect(try extensions.basicConstraints == .notCertificateAuthority)
        #expect(try extensions.keyUsage?.digitalSignature == true)
        let usages = try #require(try extensions.extendedKeyUsage)
        #expect(usages.contains(.serverAuth) && usages.contains(.clientAuth))
    }

    @Test func trackerCarriesItsNamesAsSubjectAlternativeNames() throws {
        let ca = try TestAuthority()
        let tracker = try ca.identity(.tracker(name: "t1", dnsNames: ["tracker.example"], ipAddresses: ["127.0.0.1", "::1"], days: 30))
        let names = try #require(try tracker.certificate.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("tracker.example")))
        #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))))
        #expect(names.count == 3)
        #expect(try ca.trust().validate(tracker.certificate, as: .tracker).role == .tracker)
    }

    @Test func trackerWithoutNamesDefaultsToLoopback() throws {
        let request = IssueRequest.tracker(name: "t1", dnsNames: [], ipAddresses: [], days: 30)
        #expect(request.dnsNames == ["localhost"])
        #expect(request.ipAddresses == ["127.0.0.1"])
    }

    @Test func aNameWithALiveCertificateIsRefusedUntilRevoked() throws {
        let ca = try TestAuthority()
        let first = try ca.peer("alice")
        #expect(throws: PKIError(.nameInUse, "")) { try ca.peer("alice") }
        try ca.authority.revoke(name: "alice", reason: .superseded)
        let second = try ca.peer("alice")
        #expect(second.certificate.serialNumber != first.certificate.serialNumber)
        let archived = "\(ca.layout.archiveFolder)/alice-\(Hex.encode(first.certificate.serialNumber.bytes))"
        #expect(FileIO.exists("\(archived).crt") && FileIO.exists("\(archived).key"))
    }

    @Test(arguments: ["", "../x", "a/b", ".hidden", "-dash", "white space", String(repeating: "n", count: 65)])
    func badNamesAreRefused(name: String) throws {
        let ca = try TestAuthority()
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.issue(.peer(name: name, groups: [], days: 30)) }
    }

    @Test func badArgumentsAreRefused() throws {
        let ca = try TestAuthority()
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.issue(.peer(name: "a", groups: ["bad group"], days: 30)) }
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.issue(.tracker(name: "t", dnsNames: [], ipAddresses: ["300.1.1.1"], days: 30)) }
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.issue(.tracker(name: "t", dnsNames: ["-bad-.example"], ipAddresses: [], days: 30)) }
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.issue(.peer(name: "a", groups: [], days: 0)) }
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.issue(.peer(name: "a", groups: [], days: 3651)) }
    }

    @Test func aCertificateMayNotOutliveTheCA() throws {
        let ca = try TestAuthority(now: Date() - 3000 * 86400)
        #expect(throws: PKIError(.invalidArgument, "")) { try ca.authority.issue(.peer(name: "a", groups: [], days: 1000)) }
        #expect(try ca.authority.issue(.peer(name: "a", groups: [], days: 500)).entry.name == "a")
    }

    @Test func revokingAnUnknownNameFails() throws {
        let ca = try TestAuthority()
        #expect(throws: PKIError(.unknownName, "")) { try ca.authority.revoke(name: "nobody") }
    }

    @Test func openingAFolderWithoutACAFails() throws {
        let folder = TemporaryFolder()
        #expect(throws: PKIError(.notInitialized, "")) { try CertificateAuthority(opening: PKILayout(folder: folder.path)) }
    }

    @Test func reportShowsEveryStatusAndWarnsOfAnEndingCRL() throws {
        let ca = try TestAuthority()
        let now = Date()
        try ca.peer("fresh", days: 300)
        try ca.peer("soon", days: 10)
        try ca.peer("gone")
        try ca.authority.revoke(name: "gone", reason: .keyCompromise)
        try ca.peer("old", days: 5, now: now - 10 * 86400)
        let report = try ca.authority.report()
        let statuses = Dictionary(uniqueKeysWithValues: report.certificates.map { ($0.name, AuthorityReport.status(of: $0, at: now)) })
        #expect(statuses["fresh"] == "valid")
        #expect(statuses["soon"]?.hasPrefix("expiring in") == true)
        #expect(statuses["gone"]?.hasPrefix("revoked") == true)
        #expect(statuses["old"] == "expired")
        let rendered = report.rendered(at: now)
        #expect(rendered.contains("WARNING, expiring within 14 days: soon ("))
        #expect(!rendered.contains("fresh ("))
        func crlLine(at time: Date) -> Substring? { report.rendered(at: time).split(separator: "\n").first { $0.hasPrefix("CRL #") } }
        #expect(crlLine(at: now)?.contains("WARNING") == false)
        #expect(crlLine(at: now + 25 * 86400)?.contains("WARNING, expires in") == true)
        #expect(report.rendered(at: now + 31 * 86400).contains("EXPIRED"))
    }
}
