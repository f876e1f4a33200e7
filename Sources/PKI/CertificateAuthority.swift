import FileIO
import Foundation
import X509

/// What a certificate is issued for: a tracker with its network names, or a peer with its groups,
/// and its lifetime (`mtca issue`, or what `mtca sign` and `mtca renew` make of a request or a
/// previous certificate).
public struct IssueRequest: Sendable {
    public var name: String
    public var role: Role
    public var groups: [String]
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var days: Int

    /// A tracker certificate. With no names at all it gets `localhost` and `127.0.0.1`.
    public static func tracker(name: String, dnsNames: [String], ipAddresses: [String], days: Int) -> IssueRequest {
        let defaulted = dnsNames.isEmpty && ipAddresses.isEmpty
        return IssueRequest(
            name: name, role: .tracker, groups: [],
            dnsNames: defaulted ? ["localhost"] : dnsNames, ipAddresses: defaulted ? ["127.0.0.1"] : ipAddresses, days: days
        )
    }

    /// A peer certificate in the given groups.
    public static func peer(name: String, groups: [String], days: Int) -> IssueRequest {
        IssueRequest(name: name, role: .peer, groups: groups, dnsNames: [], ipAddresses: [], days: days)
    }
}

/// Where a newly issued certificate (and, when the CA made it, its key) was written.
public struct IssuedCertificate: Sendable {
    public let entry: LedgerEntry
    public let certificatePath: String
    /// The private key's file in the CA folder; `nil` when the machine made the key and keeps it
    /// (a signed request).
    public let keyPath: String?
}

/// A small certificate authority kept in a folder (see ``PKILayout``): it creates itself, issues
/// tracker and peer certificates, revokes them and signs the revocation list. Every change
/// happens under a lock file and is written atomically, so concurrent `mtca` runs are safe.
public struct CertificateAuthority: Sendable {
    public static let defaultAuthorityDays = 3650
    public static let defaultLeafDays = 365
    public static let defaultRevocationListDays = 30
    /// Certificates and CRLs start this long before they are made, so that a machine whose clock
    /// runs a little behind the CA's still accepts them.
    public static let clockSkewAllowance: TimeInterval = 3600

    public let layout: PKILayout

    /// Opens the CA in `layout`; fails if there is none.
    public init(opening layout: PKILayout) throws {
        for path in [layout.authorityCertificate, layout.authorityKey, layout.ledger] where !FileIO.exists(path) {
            throw PKIError(.notInitialized, "no CA in \(layout.folder) (\(path) is missing); create one with 'mtca init --pki \(layout.folder)'")
        }
        self.layout = layout
    }

    /// Creates a CA in `layout`: key (0600), self-signed certificate, ledger and an empty signed CRL.
    /// Touches nothing if any of those files already exists.
    public static func initialize(
        at layout: PKILayout, name: String, days: Int = defaultAuthorityDays,
        revocationListDays: Int = defaultRevocationListDays, now: Date = Date()
    ) throws -> CertificateAuthority {
        guard !name.isEmpty, name.count <= 64, name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f }) else {
            throw PKIError(.invalidArgument, "the CA name must be 1 to 64 printable characters")
        }
        try checkDays(days, within: 1...36500, what: "CA lifetime")
        try checkDays(revocationListDays, within: 1...366, what: "CRL lifetime")
        try FileIO.makeFolder(layout.folder, mode: 0o700)
        return try FileIO.withExclusiveLock(layout.lock) {
            let existing = [layout.authorityCertificate, layout.authorityKey, layout.ledger, layout.revocationList].filter(FileIO.exists)
            guard existing.isEmpty else {
                throw PKIError(.alreadyInitialized, "a CA already exists in \(layout.folder) (\(existing.joined(separator: ", "))); nothing was changed")
            }
            let key = CertificateProfile.makePrivateKey()
            let certificate = try CertificateProfile.authorityCertificate(
                name: name, key: key, notBefore: now - clockSkewAllowance, notAfter: now.addingTimeInterval(Double(days) * 86400)
            )
            let ledger = Ledger(authorityName: name, revocationListNumber: 0, revocationListDays: revocationListDays, certificates: [])
            try FileIO.createExclusive(layout.authorityKey, bytes: Array(try key.serializeAsPEM().pemString.utf8) + [0x0a], mode: 0o600)
            try FileIO.createExclusive(layout.authorityCertificate, bytes: Array(try certificate.serializeAsPEM().pemString.utf8) + [0x0a], mode: 0o644)
            try FileIO.makeFolder(layout.issuedFolder, mode: 0o700)
            let authority = CertificateAuthority(layout: layout)
            _ = try authority.signRevocationList(ledger: ledger, certificate: certificate, key: key, now: now)
            return authority
        }
    }

    private init(layout: PKILayout) {
        self.layout = layout
    }

    /// Issues a certificate and key into `issued/NAME.crt` and `issued/NAME.key` (0600).
    /// Refuses a name that already has a live certificate; files of a revoked or expired
    /// certificate of that name are moved to `issued/archive/` first.
    @discardableResult
    public func issue(_ request: IssueRequest, now: Date = Date()) throws -> IssuedCertificate {
        try Self.check(request)
        return try FileIO.withExclusiveLock(layout.lock) {
            var ledger = try Ledger.load(from: layout.ledger)
            let previous = ledger.newest(named: request.name)
            if let previous, previous.isLive(at: now) {
                throw PKIError(
                    .nameInUse,
                    "'\(request.name)' already has a live certificate (serial \(previous.serial), valid until \(Self.day(previous.notAfter))); renew it with 'mtca renew \(request.name)' or revoke it first with 'mtca revoke \(request.name)'"
                )
            }
            let (authority, authorityKey) = try loadAuthority()
            try Self.checkLifetime(of: request, now: now, authority: authority)
            return try replacingFiles(of: request.name, serial: previous?.serial, keepingKey: false) {
                let key = CertificateProfile.makePrivateKey()
                let keyPath = layout.privateKey(named: request.name)
                try FileIO.makeFolder(layout.issuedFolder, mode: 0o700)
                try FileIO.createExclusive(keyPath, bytes: Array(try key.serializeAsPEM().pemString.utf8) + [0x0a], mode: 0o600)
                do {
                    let entry = try certify(request, publicKey: key.publicKey, authority: authority, authorityKey: authorityKey, ledger: &ledger, now: now)
                    return IssuedCertificate(entry: entry, certificatePath: layout.certificate(named: request.name), keyPath: keyPath)
                } catch {
                    try? FileIO.remove(keyPath)
                    throw error
                }
            }
        }
    }

    /// Revokes the unrevoked certificates of `name` and re-signs the CRL: every one of them, or
    /// only the one whose serial starts with `serial`. Returns the entries it revoked.
    @discardableResult
    public func revoke(
        name: String, serial: String? = nil, reason: RevocationReason = .unspecified, now: Date = Date()
    ) throws -> ([LedgerEntry], RevocationList) {
        try FileIO.withExclusiveLock(layout.lock) {
            var ledger = try Ledger.load(from: layout.ledger)
            var chosen = ledger.certificates.indices.filter { ledger.certificates[$0].name == name && ledger.certificates[$0].revokedAt == nil }
            guard !chosen.isEmpty else {
                throw PKIError(.unknownName, "there is no unrevoked certificate named '\(name)'; 'mtca list' shows them all")
            }
            if let serial {
                let prefix = serial.lowercased()
                guard !prefix.isEmpty, prefix.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }) else {
                    throw PKIError(.invalidArgument, "'\(serial)' is not a serial number: give the hexadecimal digits 'mtca list' shows")
                }
                chosen = chosen.filter { ledger.certificates[$0].serial.hasPrefix(prefix) }
                guard !chosen.isEmpty else {
                    throw PKIError(.unknownName, "no unrevoked certificate of '\(name)' has a serial starting with '\(serial)'; 'mtca list' shows them all")
                }
                guard chosen.count == 1 else {
                    throw PKIError(.invalidArgument, "\(chosen.count) certificates of '\(name)' have a serial starting with '\(serial)'; give more digits")
                }
            }
            for index in chosen {
                ledger.certificates[index].revokedAt = now
                ledger.certificates[index].revocationReason = reason
            }
            let (authority, authorityKey) = try loadAuthority()
            let list = try signRevocationList(ledger: ledger, certificate: authority, key: authorityKey, now: now)
            return (chosen.map { ledger.certificates[$0] }, list)
        }
    }

    /// Signs a fresh CRL (a new number and window); `days` also becomes the lifetime of later lists.
    @discardableResult
    public func renewRevocationList(days: Int? = nil, now: Date = Date()) throws -> RevocationList {
        if let days { try Self.checkDays(days, within: 1...366, what: "CRL lifetime") }
        return try FileIO.withExclusiveLock(layout.lock) {
            var ledger = try Ledger.load(from: layout.ledger)
            if let days { ledger.revocationListDays = days }
            let (authority, authorityKey) = try loadAuthority()
            return try signRevocationList(ledger: ledger, certificate: authority, key: authorityKey, now: now)
        }
    }

    /// The CA's state for `mtca list`.
    public func report() throws -> AuthorityReport {
        let ledger = try Ledger.load(from: layout.ledger)
        let authority = try TrustStore.loadCertificate(at: layout.authorityCertificate)
        let list = try RevocationList(pemEncoded: FileIO.readText(layout.revocationList, limit: RevocationList.maximumSize))
        return AuthorityReport(
            authorityName: ledger.authorityName, authorityNotAfter: authority.notValidAfter,
            certificates: ledger.certificates, revocationListNumber: list.number, revocationListNextUpdate: list.nextUpdate
        )
    }

    private func signRevocationList(ledger: Ledger, certificate: Certificate, key: Certificate.PrivateKey, now: Date) throws -> RevocationList {
        var ledger = ledger
        // Strictly above both the ledger's count and the list on disk, even if one of them was restored from a backup.
        ledger.revocationListNumber = max(ledger.revocationListNumber, currentRevocationListNumber(signedBy: certificate)) + 1
        let entries = try ledger.certificates.compactMap { entry -> RevocationList.Entry? in
            guard let revokedAt = entry.revokedAt else { return nil }
            guard let serial = Hex.decode(entry.serial) else { throw PKIError(.badFile, "the ledger holds a malformed serial '\(entry.serial)'") }
            return RevocationList.Entry(serial: Certificate.SerialNumber(bytes: serial), revokedAt: revokedAt, reason: entry.revocationReason ?? .unspecified)
        }
        let list = try RevocationList.sign(
            entries: entries, number: ledger.revocationListNumber, thisUpdate: now - Self.clockSkewAllowance,
            nextUpdate: now.addingTimeInterval(Double(ledger.revocationListDays) * 86400),
            authority: certificate, authorityKey: key
        )
        try ledger.save(to: layout.ledger)
        try FileIO.replaceAtomically(layout.revocationList, bytes: Array(list.pemEncoded.utf8), mode: 0o644)
        return list
    }

    /// The number of the CRL on disk, if it is one our CA signed; 0 otherwise.
    private func currentRevocationListNumber(signedBy authority: Certificate) -> Int {
        guard let text = try? FileIO.readText(layout.revocationList, limit: RevocationList.maximumSize),
              let list = try? RevocationList(pemEncoded: text), list.isSigned(by: authority)
        else { return 0 }
        return list.number
    }

    /// Signs `request` for `publicKey`, writes `issued/NAME.crt` and records it in the ledger;
    /// removes the certificate again if the ledger cannot be saved.
    func certify(
        _ request: IssueRequest, publicKey: Certificate.PublicKey, authority: Certificate, authorityKey: Certificate.PrivateKey,
        ledger: inout Ledger, now: Date
    ) throws -> LedgerEntry {
        let certificate = try CertificateProfile.leafCertificate(
            for: request, publicKey: publicKey, notBefore: now - Self.clockSkewAllowance,
            notAfter: now.addingTimeInterval(Double(request.days) * 86400), authority: authority, authorityKey: authorityKey
        )
        let entry = LedgerEntry(
            serial: Hex.encode(certificate.serialNumber.bytes), name: request.name, role: request.role,
            groups: request.groups, dnsNames: request.dnsNames, ipAddresses: request.ipAddresses,
            notBefore: certificate.notValidBefore, notAfter: certificate.notValidAfter, revokedAt: nil, revocationReason: nil
        )
        let certificatePath = layout.certificate(named: request.name)
        try FileIO.makeFolder(layout.issuedFolder, mode: 0o700)
        try FileIO.createExclusive(certificatePath, bytes: Array(try certificate.serializeAsPEM().pemString.utf8) + [0x0a], mode: 0o644)
        do {
            ledger.certificates.append(entry)
            try ledger.save(to: layout.ledger)
        } catch {
            try? FileIO.remove(certificatePath)
            throw error
        }
        return entry
    }

    func loadAuthority() throws -> (Certificate, Certificate.PrivateKey) {
        let certificate = try TrustStore.loadCertificate(at: layout.authorityCertificate)
        let key = try SigningIdentity.loadPrivateKey(at: layout.authorityKey)
        guard key.publicKey == certificate.publicKey else {
            throw PKIError(.badFile, "\(layout.authorityKey) does not belong to \(layout.authorityCertificate)")
        }
        return (certificate, key)
    }

    /// Moves `issued/NAME.crt` (and, unless `keepingKey`, `issued/NAME.key`) of the certificate
    /// `serial` to `issued/archive/NAME-SERIAL.crt` (`.key`), then runs `body`, which writes the new
    /// files. If `body` fails, the archived files move back: the operation leaves nothing changed.
    func replacingFiles<T>(of name: String, serial: String?, keepingKey: Bool, _ body: () throws -> T) throws -> T {
        let candidates = keepingKey ? [layout.certificate(named: name)] : [layout.certificate(named: name), layout.privateKey(named: name)]
        let files = candidates.filter(FileIO.exists)
        if !files.isEmpty, serial == nil {
            throw PKIError(.nameInUse, "\(files.joined(separator: " and ")) exist but the ledger has no certificate named '\(name)'; move them away first")
        }
        var moved: [(from: String, to: String)] = []
        do {
            if !files.isEmpty { try FileIO.makeFolder(layout.archiveFolder, mode: 0o700) }
            for file in files {
                let archived = "\(layout.archiveFolder)/\(name)-\(serial ?? "").\(file.hasSuffix(".key") ? "key" : "crt")"
                try FileIO.move(file, to: archived)
                moved.append((file, archived))
            }
            return try body()
        } catch {
            for move in moved.reversed() { try? FileIO.move(move.to, to: move.from) }
            throw error
        }
    }

    /// Refuses a lifetime that would outlive the CA.
    static func checkLifetime(of request: IssueRequest, now: Date, authority: Certificate) throws {
        guard now.addingTimeInterval(Double(request.days) * 86400) <= authority.notValidAfter else {
            throw PKIError(.invalidArgument, "a certificate for \(request.days) days would outlive the CA (valid until \(Self.day(authority.notValidAfter))); ask for fewer days")
        }
    }

    /// Applies the naming rules and limits of the profile to everything `request` asks for.
    static func check(_ request: IssueRequest) throws {
        if let problem = NameRules.problem(with: request.name, kind: "name") { throw PKIError(.invalidArgument, problem) }
        for group in request.groups {
            if let problem = NameRules.problem(with: group, kind: "group") { throw PKIError(.invalidArgument, problem) }
        }
        for dnsName in request.dnsNames where !isDNSName(dnsName) {
            throw PKIError(.invalidArgument, "'\(dnsName)' is not a DNS name")
        }
        for address in request.ipAddresses { _ = try IPAddress.bytes(of: address) }
        try checkDays(request.days, within: 1...3650, what: "certificate lifetime")
    }

    private static func isDNSName(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
        }
    }

    private static func checkDays(_ days: Int, within range: ClosedRange<Int>, what: String) throws {
        guard range.contains(days) else {
            throw PKIError(.invalidArgument, "the \(what) must be between \(range.lowerBound) and \(range.upperBound) days, not \(days)")
        }
    }

    static func day(_ date: Date) -> String {
        String(ISO8601DateFormatter.string(from: date, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate]))
    }
}
