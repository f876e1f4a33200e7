/// Where the files of a PKI folder live. The same layout serves the CA's own folder and a
/// machine that holds only `ca.crt`, `crl.pem` and its own `issued/NAME.crt` and `.key`.
public struct PKILayout: Sendable {
    public let folder: String

    public init(folder: String) {
        self.folder = folder.count > 1 && folder.hasSuffix("/") ? String(folder.dropLast()) : folder
    }

    public var authorityCertificate: String { "\(folder)/ca.crt" }
    public var authorityKey: String { "\(folder)/ca.key" }
    public var revocationList: String { "\(folder)/crl.pem" }
    public var ledger: String { "\(folder)/ledger.json" }
    public var lock: String { "\(folder)/.lock" }
    public var issuedFolder: String { "\(folder)/issued" }
    public var archiveFolder: String { "\(folder)/issued/archive" }

    public func certificate(named name: String) -> String { "\(issuedFolder)/\(name).crt" }
    public func privateKey(named name: String) -> String { "\(issuedFolder)/\(name).key" }
}
