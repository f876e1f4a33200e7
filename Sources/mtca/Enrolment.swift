import ArgumentParser
import Foundation
import PKI

extension MTCA {
    struct Request: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "On the machine itself: make its private key (issued/NAME.key, 0600) and a certificate request for the CA.",
            discussion: "The request goes to NAME.csr in the current folder unless -o names another file. The key never leaves this machine and is never replaced.",
            subcommands: [Tracker.self, Peer.self]
        )

        @OptionGroup var folder: PKIFolder

        struct Tracker: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Request a tracker certificate (default names: localhost, 127.0.0.1).")

            @ParentCommand var parent: Request
            @OptionGroup var tracker: TrackerArguments
            @OptionGroup var output: RequestOutput

            func run() throws {
                try output.write(tracker.request(days: CertificateAuthority.defaultLeafDays), folder: parent.folder)
            }
        }

        struct Peer: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Request a peer certificate.")

            @ParentCommand var parent: Request
            @OptionGroup var peer: PeerArguments
            @OptionGroup var output: RequestOutput

            func run() throws {
                try output.write(peer.request(days: CertificateAuthority.defaultLeafDays), folder: parent.folder)
            }
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "On the CA: check a machine's certificate request, show what it asks for, and sign it into issued/NAME.crt.",
            discussion: "Asks for confirmation on standard input unless --yes; any answer but 'y' or 'yes' writes nothing. The CA never holds the machine's key."
        )

        @OptionGroup var folder: PKIFolder
        @Argument(help: "The request file (PEM, as 'mtca request' wrote it).") var request: String
        @Option(help: "Lifetime in days.") var days = CertificateAuthority.defaultLeafDays
        @Flag(help: "Sign without asking.") var yes = false

        func run() throws {
            let authority = try folder.authority()
            let signingRequest = try CertificateAuthority.readRequest(at: request)
            let live = try authority.liveCertificates(signing: signingRequest, days: days)
            print("""
                The request \(request) asks for:
                  role    \(signingRequest.role)
                  name    \(signingRequest.name)
                  groups  \(signingRequest.groups.isEmpty ? "none" : signingRequest.groups.joined(separator: ", "))
                  names   \(signingRequest.role == .tracker ? (signingRequest.dnsNames + signingRequest.ipAddresses).joined(separator: ", ") : "none")
                  key     sha256 \(try CertificateProfile.fingerprint(of: signingRequest.publicKey))
                It would be valid for \(days) days, until \(day(Date().addingTimeInterval(Double(days) * 86400))).
                """)
            for entry in live {
                print("'\(entry.name)' already holds serial \(entry.serial.prefix(16))… until \(day(entry.notAfter)); it stays valid until then or until revoked.")
            }
            if !yes {
                print("Compare the key with what 'mtca request' printed on the machine. Sign it? [y/N] ", terminator: "")
                fflush(nil)
                let answer = readLine()?.trimmingCharacters(in: .whitespaces).lowercased()
                // A person's Enter ends the prompt's line; an answer from a pipe does not.
                if isatty(STDIN_FILENO) == 0 { print("") }
                guard answer == "y" || answer == "yes" else {
                    FileHandle.standardError.write(Data("Not signed; nothing was written.\n".utf8))
                    throw ExitCode.failure
                }
            }
            printIssued(try authority.sign(signingRequest, days: days), pki: folder.pki)
        }
    }

    struct Bundle: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the PKI folder one machine needs: ca.crt, crl.pem, issued/NAME.crt and, if the CA made it, issued/NAME.key.",
            discussion: """
                The folder is what 'tracker --pki' and 'peer --pki' read. Existing files are never replaced: bundle into a new \\
                folder, or into the folder where 'mtca request' made the machine's key (that key is checked and kept).
                """
        )

        @OptionGroup var folder: PKIFolder
        @Argument(help: "The machine's name.") var name: String
        @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("The folder to write (created if missing).", valueName: "dir"))
        var output: String

        func run() throws {
            let bundle = try folder.authority().bundle(name: name, into: PKILayout(folder: output))
            print("Wrote the PKI folder of \(bundle.entry.role) '\(name)' (serial \(bundle.entry.serial.prefix(16))…, valid until \(day(bundle.entry.notAfter))):")
            for path in bundle.written { print("  \(path)") }
            let keyPath = bundle.layout.privateKey(named: name)
            switch bundle.key {
            case .copiedFromAuthority:
                print("The CA made this key: move the folder to '\(name)' over a channel you trust, and delete this copy.")
            case .alreadyInFolder:
                print("  \(keyPath)  (the machine's own key, already there and kept)")
            case .onTheMachine:
                print("The key stays on the machine: copy these files into its PKI folder, next to the issued/\(name).key 'mtca request' made there.")
            }
            switch bundle.entry.role {
            case .tracker: print("Start it with: tracker ADDRESS:PORT --pki \(output) --name \(name)")
            case .peer: print("Start it with: peer ADDRESS:PORT TRACKER1 TRACKER2 --pki \(output) --name \(name)")
            }
        }
    }

    struct Renew: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a new certificate for a name, with the same key and profile; the previous one stays valid until it expires.",
            discussion: "Only for keys the CA made ('mtca issue'). A machine that made its own key renews with 'mtca request ... --reuse-key' there and 'mtca sign' here."
        )

        @OptionGroup var folder: PKIFolder
        @Argument(help: "The name to renew.") var name: String
        @Option(help: "Lifetime in days.") var days = CertificateAuthority.defaultLeafDays

        func run() throws {
            printIssued(try folder.authority().renew(name: name, days: days), pki: folder.pki)
            print("The previous certificate stays valid until it expires; 'mtca revoke \(name) --serial HEX' ends it sooner.")
        }
    }
}

/// Where `mtca request` writes, and whether it reuses the key already there.
struct RequestOutput: ParsableArguments {
    @Option(name: [.customShort("o"), .customLong("output")], help: ArgumentHelp("The request file to write (default: NAME.csr here).", valueName: "file"))
    var path: String?
    @Flag(help: "Request a renewal for the key already in issued/NAME.key instead of making a new one.") var reuseKey = false

    func write(_ request: IssueRequest, folder: PKIFolder) throws {
        let requestPath = path ?? "\(request.name).csr"
        let signingRequest = try Enrolment.request(request, in: folder.layout, writingTo: requestPath, reusingKey: reuseKey)
        let keyPath = folder.layout.privateKey(named: request.name)
        print("""
            Wrote a request for the \(request.role) certificate '\(request.name)'\(describeNames(role: request.role, groups: request.groups, names: request.dnsNames + request.ipAddresses)).
              \(keyPath)  \(reuseKey ? "(the key already there)" : "(new key, mode 0600)"): it never leaves this machine
              \(requestPath)  the request; key sha256 \(try CertificateProfile.fingerprint(of: signingRequest.publicKey))
            Next: take \(requestPath) to the CA, which runs 'mtca sign \(requestPath)' (the key fingerprints must match) and \
            'mtca bundle \(request.name) -o DIR'; copy DIR's files into \(folder.pki) here.
            """)
    }
}
