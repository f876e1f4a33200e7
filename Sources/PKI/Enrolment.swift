import FileIO
import Foundation
import X509

/// The machine's side of enrolment: it makes its own private key and a signing request for the CA,
/// so that the key never leaves the machine (`mtca request`).
public enum Enrolment {
    /// Creates `issued/NAME.key` in `layout` (mode 0600, never replacing a key that is there) — or,
    /// when `reusingKey`, reads the key already there to renew its certificate — and writes a
    /// signing request for `request` to `requestPath` (never replacing a file). All or nothing:
    /// when it fails, no key and no request is left behind.
    @discardableResult
    public static func request(
        _ request: IssueRequest, in layout: PKILayout, writingTo requestPath: String, reusingKey: Bool
    ) throws -> SigningRequest {
        try CertificateAuthority.check(request)
        let keyPath = layout.privateKey(named: request.name)
        guard !FileIO.exists(requestPath) else {
            throw PKIError(.fileExists, "\(requestPath) exists already; move it away or name another file with -o")
        }
        let key: Certificate.PrivateKey
        if reusingKey {
            guard FileIO.exists(keyPath) else {
                throw PKIError(.badFile, "there is no key at \(keyPath) to reuse; leave out --reuse-key to create one")
            }
            key = try SigningIdentity.loadPrivateKey(at: keyPath)
        } else {
            guard !FileIO.exists(keyPath) else {
                throw PKIError(
                    .fileExists,
                    "\(keyPath) exists already and is never replaced; to renew the certificate of this key add --reuse-key, to start over move the key away first"
                )
            }
            key = CertificateProfile.makePrivateKey()
            try FileIO.makeFolder(layout.issuedFolder, mode: 0o700)
            try FileIO.createExclusive(keyPath, bytes: Array(try key.serializeAsPEM().pemString.utf8) + [0x0a], mode: 0o600)
        }
        do {
            let signingRequest = try SigningRequest(for: request, key: key)
            try FileIO.createExclusive(requestPath, bytes: Array(signingRequest.pemEncoded.utf8), mode: 0o644)
            return signingRequest
        } catch {
            if !reusingKey { try? FileIO.remove(keyPath) }
            throw error
        }
    }
}

extension CertificateAuthority {
    /// Reads a signing request file (at most ``SigningRequest/maximumFileSize`` bytes) strictly.
    public static func readRequest(at path: String) throws -> SigningRequest {
        do {
            return try SigningRequest(pemEncoded: FileIO.readText(path, limit: SigningRequest.maximumFileSize))
        } catch let error as FileIOError {
            if case .tooLarge = error.kind {
                throw PKIError(.invalidRequest, "the certificate request was refused: \(path) is larger than \(SigningRequest.maximumFileSize) bytes")
            }
            throw error
        }
    }

    /// Whether the CA would sign `request` for `days` at `now`; returns the live certificates the
    /// name already has (they stay valid: signing renews). Refuses a request for a name that holds
    /// a live certificate of the other role, for the key of the name's revoked newest certificate,
    /// or for a lifetime beyond the CA's.
    public func liveCertificates(signing request: SigningRequest, days: Int, now: Date = Date()) throws -> [LedgerEntry] {
        let issueRequest = request.issueRequest(days: days)
        try Self.check(issueRequest)
        let (authority, _) = try loadAuthority()
        try Self.checkLifetime(of: issueRequest, now: now, authority: authority)
        let ledger = try Ledger.load(from: layout.ledger)
        if let newest = ledger.newest(named: request.name), newest.revokedAt != nil,
           let revoked = try? TrustStore.loadCertificate(at: layout.certificate(named: request.name)), revoked.publicKey == request.publicKey
        {
            throw PKIError(
                .invalidRequest,
                "the certificate request was refused: its key is that of the revoked certificate \(newest.serial) of '\(request.name)'; on the machine move issued/\(request.name).key away and run 'mtca request' again without --reuse-key"
            )
        }
        let live = ledger.certificates.filter { $0.name == request.name && $0.isLive(at: now) }
        if let other = live.first(where: { $0.role != request.role }) {
            throw PKIError(
                .nameInUse,
                "'\(request.name)' holds a live \(other.role) certificate (serial \(other.serial)); a name keeps its role: choose another name or revoke it first"
            )
        }
        return live
    }

    /// Signs a machine's request: writes `issued/NAME.crt` (the files of the name's previous
    /// certificate move to `issued/archive/`, a key the CA made for it included) and records it in
    /// the ledger. The CA never sees the machine's key. Live certificates of the name stay valid.
    /// When the CA folder is also the machine's folder (the CA's machine enrolled itself), the key
    /// there is the request's and stays.
    @discardableResult
    public func sign(_ request: SigningRequest, days: Int = defaultLeafDays, now: Date = Date()) throws -> IssuedCertificate {
        try FileIO.withExclusiveLock(layout.lock) {
            _ = try liveCertificates(signing: request, days: days, now: now)
            var ledger = try Ledger.load(from: layout.ledger)
            let (authority, authorityKey) = try loadAuthority()
            // A key of this name in the CA folder is the request's own only when the CA's machine
            // enrolled itself with the same folder; any other belongs to the previous certificate.
            let keyPath = layout.privateKey(named: request.name)
            let holdsRequestKey = FileIO.exists(keyPath) && (try? SigningIdentity.loadPrivateKey(at: keyPath).publicKey) == request.publicKey
            let entry = try replacingFiles(of: request.name, serial: ledger.newest(named: request.name)?.serial, keepingKey: holdsRequestKey) {
                try certify(
                    request.issueRequest(days: days), publicKey: request.publicKey, authority: authority, authorityKey: authorityKey,
                    ledger: &ledger, now: now
                )
            }
            return IssuedCertificate(entry: entry, certificatePath: layout.certificate(named: request.name), keyPath: holdsRequestKey ? keyPath : nil)
        }
    }

    /// Issues a new certificate for the same name, profile and key as the newest one of `name`,
    /// whose key the CA made and holds. The previous certificate stays valid until it expires
    /// (its file moves to `issued/archive/`); the ledger keeps both.
    @discardableResult
    public func renew(name: String, days: Int = defaultLeafDays, now: Date = Date()) throws -> IssuedCertificate {
        try FileIO.withExclusiveLock(layout.lock) {
            var ledger = try Ledger.load(from: layout.ledger)
            guard let previous = ledger.newest(named: name) else {
                throw PKIError(.unknownName, "there is no certificate named '\(name)'; 'mtca list' shows them all")
            }
            guard previous.revokedAt == nil else {
                throw PKIError(
                    .invalidArgument,
                    "the newest certificate of '\(name)' is revoked and its key is not used again; issue a new one ('mtca issue \(previous.role) \(name)') or sign a new request"
                )
            }
            let keyPath = layout.privateKey(named: name)
            guard FileIO.exists(keyPath) else {
                throw PKIError(
                    .keyNotHeld,
                    "the CA folder does not hold the key of '\(name)': it was made on that machine. There, run 'mtca request --pki DIR \(previous.role) \(name) --reuse-key' with the same groups or names, and sign that request here with 'mtca sign'"
                )
            }
            let key = try SigningIdentity.loadPrivateKey(at: keyPath)
            let current = try TrustStore.loadCertificate(at: layout.certificate(named: name))
            guard current.publicKey == key.publicKey, Hex.encode(current.serialNumber.bytes) == previous.serial else {
                throw PKIError(.badFile, "\(layout.certificate(named: name)) and \(keyPath) are not the newest certificate of '\(name)' and its key; nothing was changed")
            }
            let request = IssueRequest(
                name: name, role: previous.role, groups: previous.groups, dnsNames: previous.dnsNames,
                ipAddresses: previous.ipAddresses, days: days
            )
            try Self.check(request)
            let (authority, authorityKey) = try loadAuthority()
            try Self.checkLifetime(of: request, now: now, authority: authority)
            let entry = try replacingFiles(of: name, serial: previous.serial, keepingKey: true) {
                try certify(request, publicKey: key.publicKey, authority: authority, authorityKey: authorityKey, ledger: &ledger, now: now)
            }
            return IssuedCertificate(entry: entry, certificatePath: layout.certificate(named: name), keyPath: keyPath)
        }
    }
}
