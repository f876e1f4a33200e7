import ArgumentParser
import Foundation
import PKI

@main
struct MTCA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mtca",
        abstract: "The MiniTorrent certificate authority: creates the CA, enrols trackers and peers, renews and revokes their certificates.",
        discussion: """
            Files live in a PKI folder (default ./pki): ca.crt, ca.key (0600), crl.pem, ledger.json and issued/NAME.crt (+ NAME.key \
            when the CA made the key). A machine makes its own key with 'request'; the CA signs the request with 'sign' and \
            hands over the machine's folder with 'bundle'. See pki/README.md.
            """,
        version: Release.version,
        subcommands: [Init.self, Request.self, Sign.self, Bundle.self, Issue.self, Renew.self, Revoke.self, CRL.self, List.self]
    )
}

struct PKIFolder: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The PKI folder.", valueName: "dir"))
    var pki: String = "./pki"

    var layout: PKILayout { PKILayout(folder: pki) }
    func authority() throws -> CertificateAuthority { try CertificateAuthority(opening: layout) }
}

/// A date as the CA's messages show it: the UTC day.
func day(_ date: Date) -> String {
    ISO8601DateFormatter.string(from: date, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
}

/// A tracker's name and the network names peers dial, as `issue tracker` and `request tracker` take them.
struct TrackerArguments: ParsableArguments {
    @Argument(help: "The tracker's name.") var name: String
    @Option(name: .customLong("ip"), help: "An IP address peers dial (repeatable).") var ipAddresses: [String] = []
    @Option(name: .customLong("dns"), help: "A DNS name peers dial (repeatable).") var dnsNames: [String] = []

    func request(days: Int) -> IssueRequest {
        .tracker(name: name, dnsNames: dnsNames, ipAddresses: ipAddresses, days: days)
    }
}

/// A peer's name and groups, as `issue peer` and `request peer` take them.
struct PeerArguments: ParsableArguments {
    @Argument(help: "The peer's name.") var name: String
    @Option(name: .customLong("group"), help: "A group the peer belongs to, for tracker ACLs (repeatable).") var groups: [String] = []

    func request(days: Int) -> IssueRequest {
        .peer(name: name, groups: groups, days: days)
    }
}

extension MTCA {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a CA: ca.crt, ca.key, an empty signed crl.pem and the ledger.")

        @OptionGroup var folder: PKIFolder
        @Option(help: "The CA's name.") var name = "MiniTorrent CA"
        @Option(help: "Lifetime of the CA certificate in days.") var days = CertificateAuthority.defaultAuthorityDays

        func run() throws {
            let authority = try CertificateAuthority.initialize(at: folder.layout, name: name, days: days)
            let report = try authority.report()
            print("""
                Created CA '\(name)' in \(folder.pki), valid until \(day(report.authorityNotAfter)).
                  \(folder.layout.authorityCertificate)  give to every tracker and peer
                  \(folder.layout.authorityKey)  keep secret (mode 0600); it signs everything
                  \(folder.layout.revocationList)  CRL valid until \(day(report.revocationListNextUpdate)); renew with 'mtca crl'
                Next: on each machine 'mtca request tracker NAME --ip ADDRESS' or 'mtca request peer NAME', then here 'mtca sign NAME.csr' and 'mtca bundle NAME -o DIR'.
                """)
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Quick path for demos and tests: make a key and certificate in the CA folder (issued/NAME.crt and NAME.key).",
            discussion: "The key is made on the CA's machine and must then travel; for real machines use 'request', 'sign' and 'bundle'.",
            subcommands: [Tracker.self, Peer.self]
        )

        @OptionGroup var folder: PKIFolder

        struct Tracker: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Issue a tracker certificate (default names: localhost, 127.0.0.1).")

            @ParentCommand var issue: Issue
            @OptionGroup var tracker: TrackerArguments
            @Option(help: "Lifetime in days.") var days = CertificateAuthority.defaultLeafDays

            func run() throws {
                printIssued(try issue.folder.authority().issue(tracker.request(days: days)), pki: issue.folder.pki)
            }
        }

        struct Peer: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Issue a peer certificate.")

            @ParentCommand var issue: Issue
            @OptionGroup var peer: PeerArguments
            @Option(help: "Lifetime in days.") var days = CertificateAuthority.defaultLeafDays

            func run() throws {
                printIssued(try issue.folder.authority().issue(peer.request(days: days)), pki: issue.folder.pki)
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke certificates of a name and re-sign crl.pem.",
            discussion: "Without --serial every unrevoked certificate of the name is revoked (a renewed name has several); with --serial only that one."
        )

        @OptionGroup var folder: PKIFolder
        @Argument(help: "The name whose certificates to revoke.") var name: String
        @Option(help: ArgumentHelp("Revoke only the certificate whose serial starts with these hex digits (as 'mtca list' shows).", valueName: "hex"))
        var serial: String?
        @Option(help: "Why: \(RevocationReason.allCases.map(\.rawValue).joined(separator: ", ")).")
        var reason: String = RevocationReason.unspecified.rawValue

        func validate() throws {
            guard RevocationReason(rawValue: reason) != nil else {
                throw ValidationError("'\(reason)' is not a reason; use one of \(RevocationReason.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
        }

        func run() throws {
            let (entries, list) = try folder.authority().revoke(name: name, serial: serial, reason: RevocationReason(rawValue: reason)!)
            print("Revoked \(entries.count) certificate(s) of '\(name)' (\(reason)):")
            for entry in entries {
                print("  \(entry.role) serial \(entry.serial.prefix(16))…, valid until \(day(entry.notAfter))")
            }
            print("CRL #\(list.number) signed, valid until \(day(list.nextUpdate)). Copy \(folder.layout.revocationList) to the trackers; peers fetch it from them.")
        }
    }

    struct CRL: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crl", abstract: "Re-sign crl.pem with a new validity window and a higher CRL number.",
            discussion: """
                Safe to run from a timer (config/systemd/mtca-crl.timer): every run signs a complete new list and \
                replaces crl.pem atomically; readers see the old list or the new one. Exit status 0: a new crl.pem is \
                in place; 1: it failed and crl.pem is as it was; 64: wrong arguments.
                """
        )

        @OptionGroup var folder: PKIFolder
        @Option(help: "Lifetime of this and later CRLs in days (default: as before, initially \(CertificateAuthority.defaultRevocationListDays)).")
        var days: Int?

        func run() throws {
            let list = try folder.authority().renewRevocationList(days: days)
            let daysLeft = Int(list.nextUpdate.timeIntervalSinceNow / 86400)
            print("""
                Signed CRL #\(list.number) listing \(list.entries.count) revoked certificate(s); it expires on \(day(list.nextUpdate)) (in \(daysLeft) days).
                Copy \(folder.layout.revocationList) to the trackers before then; peers fetch it from them.
                """)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show every issued certificate with its expiry and status, names expiring within \(ExpiryNotice.certificateDays) days, and when the CRL expires."
        )

        @OptionGroup var folder: PKIFolder

        func run() throws {
            print(try folder.authority().report().rendered())
        }
    }
}

/// What `issue`, `sign` and `renew` tell the operator: the certificate, where it went, what next.
func printIssued(_ issued: IssuedCertificate, pki: String) {
    let entry = issued.entry
    print("Issued \(entry.role) certificate '\(entry.name)'\(describeNames(role: entry.role, groups: entry.groups, names: entry.dnsNames + entry.ipAddresses)), serial \(entry.serial.prefix(16))…, valid until \(day(entry.notAfter)).")
    print("  \(issued.certificatePath)")
    if let keyPath = issued.keyPath { print("  \(keyPath)  (mode 0600, keep secret)") }
    print("Next: 'mtca bundle --pki \(pki) \(entry.name) -o DIR' writes the folder the machine of '\(entry.name)' needs.")
}

/// ", groups a,b" or ", names x, y" — what a certificate asserts besides its name and role.
func describeNames(role: Role, groups: [String], names: [String]) -> String {
    switch role {
    case .peer: return groups.isEmpty ? ", no groups" : ", groups \(groups.joined(separator: ","))"
    case .tracker: return ", names \(names.joined(separator: ", "))"
    }
}
