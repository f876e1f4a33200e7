import ArgumentParser
import Foundation
import PKI

@main
struct MTCA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mtca",
        abstract: "The MiniTorrent certificate authority: creates the CA, issues tracker and peer certificates, revokes them.",
        discussion: "Files live in a PKI folder (default ./pki): ca.crt, ca.key (0600), crl.pem, ledger.json and issued/NAME.crt + NAME.key. See pki/README.md.",
        subcommands: [Init.self, Issue.self, Revoke.self, CRL.self, List.self]
    )
}

struct PKIFolder: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The PKI folder.", valueName: "dir"))
    var pki: String = "./pki"

    var layout: PKILayout { PKILayout(folder: pki) }
    func authority() throws -> CertificateAuthority { try CertificateAuthority(opening: layout) }
}

private func day(_ date: Date) -> String {
    ISO8601DateFormatter.string(from: date, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
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
                Next: 'mtca issue tracker NAME --ip ADDRESS' and 'mtca issue peer NAME'.
                """)
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a tracker or peer certificate into issued/NAME.crt and issued/NAME.key.",
            subcommands: [Tracker.self, Peer.self]
        )

        @OptionGroup var folder: PKIFolder

        struct Tracker: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Issue a tracker certificate (default names: localhost, 127.0.0.1).")

            @ParentCommand var issue: Issue
            @Argument(help: "The tracker's name.") var name: String
            @Option(name: .customLong("ip"), help: "An IP address peers dial (repeatable).") var ipAddresses: [String] = []
            @Option(name: .customLong("dns"), help: "A DNS name peers dial (repeatable).") var dnsNames: [String] = []
            @Option(help: "Lifetime in days.") var days = CertificateAuthority.defaultLeafDays

            func run() throws {
                let request = IssueRequest.tracker(name: name, dnsNames: dnsNames, ipAddresses: ipAddresses, days: days)
                printIssued(try issue.folder.authority().issue(request))
            }
        }

        struct Peer: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Issue a peer certificate.")

            @ParentCommand var issue: Issue
            @Argument(help: "The peer's name.") var name: String
            @Option(name: .customLong("group"), help: "A group the peer belongs to, for tracker ACLs (repeatable).") var groups: [String] = []
            @Option(help: "Lifetime in days.") var days = CertificateAuthority.defaultLeafDays

            func run() throws {
                printIssued(try issue.folder.authority().issue(.peer(name: name, groups: groups, days: days)))
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a certificate and re-sign crl.pem.")

        @OptionGroup var folder: PKIFolder
        @Argument(help: "The name whose certificate to revoke.") var name: String
        @Option(help: "Why: \(RevocationReason.allCases.map(\.rawValue).joined(separator: ", ")).")
        var reason: String = RevocationReason.unspecified.rawValue

        func validate() throws {
            guard RevocationReason(rawValue: reason) != nil else {
                throw ValidationError("'\(reason)' is not a reason; use one of \(RevocationReason.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
        }

        func run() throws {
            let (entry, list) = try folder.authority().revoke(name: name, reason: RevocationReason(rawValue: reason)!)
            print("""
                Revoked \(entry.role) '\(entry.name)' (serial \(entry.serial.prefix(16))…, \(reason)).
                CRL #\(list.number) signed, valid until \(day(list.nextUpdate)). Copy \(folder.layout.revocationList) to every tracker and peer.
                """)
        }
    }

    struct CRL: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "crl", abstract: "Re-sign crl.pem with a new validity window.")

        @OptionGroup var folder: PKIFolder
        @Option(help: "Lifetime of this and later CRLs in days (default: as before, initially \(CertificateAuthority.defaultRevocationListDays)).")
        var days: Int?

        func run() throws {
            let list = try folder.authority().renewRevocationList(days: days)
            let daysLeft = Int(list.nextUpdate.timeIntervalSinceNow / 86400)
            print("""
                Signed CRL #\(list.number) listing \(list.entries.count) revoked certificate(s); it expires on \(day(list.nextUpdate)) (in \(daysLeft) days).
                Copy \(folder.layout.revocationList) to every tracker and peer before then.
                """)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show every issued certificate, its status, and when the CRL expires.")

        @OptionGroup var folder: PKIFolder

        func run() throws {
            print(try folder.authority().report().rendered())
        }
    }
}

private func printIssued(_ issued: IssuedCertificate) {
    let entry = issued.entry
    var names = entry.groups.isEmpty ? "" : ", groups \(entry.groups.joined(separator: ","))"
    if !entry.dnsNames.isEmpty || !entry.ipAddresses.isEmpty {
        names += ", names \((entry.dnsNames + entry.ipAddresses).joined(separator: ", "))"
    }
    print("""
        Issued \(entry.role) certificate '\(entry.name)'\(names), serial \(entry.serial.prefix(16))…, valid until \(day(entry.notAfter)).
          \(issued.certificatePath)
          \(issued.keyPath)  (mode 0600, keep secret)
        Copy these two files, ca.crt and crl.pem to the machine of '\(entry.name)'.
        """)
}
