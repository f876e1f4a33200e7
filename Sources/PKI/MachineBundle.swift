import FileIO
import Foundation
import X509

/// What `mtca bundle` wrote for one machine: its PKI folder, ready for `tracker --pki` or `peer --pki`.
public struct MachineBundle: Sendable {
    /// How the machine's private key got into the bundle's folder.
    public enum Key: Sendable, Equatable {
        /// The CA made the key (`mtca issue`) and copied it in, mode 0600.
        case copiedFromAuthority
        /// The folder already held the machine's own key (`mtca request` made it there); it belongs to the certificate.
        case alreadyInFolder
        /// The key stays on the machine that made it (`mtca request`): the folder needs it at `issued/NAME.key` there.
        case onTheMachine
    }

    public let layout: PKILayout
    public let entry: LedgerEntry
    /// Every file written, in order.
    public let written: [String]
    public let key: Key
}

extension CertificateAuthority {
    /// Writes what the machine `name` needs into `target`: `ca.crt`, `crl.pem`, `issued/NAME.crt`
    /// and, where the CA made it, `issued/NAME.key` (0600). Never replaces a file: if any of them
    /// exists, nothing is written — except a key already in `target`, which is kept when it belongs
    /// to the certificate (the folder `mtca request` made the key in). The certificate must be the
    /// newest of its name and pass validation with the CA and CRL it ships with.
    @discardableResult
    public func bundle(name: String, into target: PKILayout, now: Date = Date()) throws -> MachineBundle {
        if let problem = NameRules.problem(with: name, kind: "name") { throw PKIError(.invalidArgument, problem) }
        return try FileIO.withExclusiveLock(layout.lock) {
            guard let entry = try Ledger.load(from: layout.ledger).newest(named: name) else {
                throw PKIError(.unknownName, "there is no certificate named '\(name)'; 'mtca list' shows them all")
            }
            let certificate = try TrustStore.loadCertificate(at: layout.certificate(named: name))
            guard Hex.encode(certificate.serialNumber.bytes) == entry.serial else {
                throw PKIError(.badFile, "\(layout.certificate(named: name)) is not the newest certificate of '\(name)' in the ledger")
            }
            let trust = try TrustStore.load(from: layout)
            do {
                _ = try trust.validate(certificate, as: entry.role, at: now)
            } catch {
                throw PKIError(.invalidArgument, "the certificate of '\(name)' would not be accepted: \(error)")
            }
            var files: [(path: String, bytes: [UInt8], mode: mode_t)] = [
                (target.authorityCertificate, try FileIO.readFile(layout.authorityCertificate, limit: TrustStore.maximumCertificateFileSize), 0o644),
                (target.revocationList, try FileIO.readFile(layout.revocationList, limit: RevocationList.maximumSize), 0o644),
                (target.certificate(named: name), try FileIO.readFile(layout.certificate(named: name), limit: TrustStore.maximumCertificateFileSize), 0o644),
            ]
            let key: MachineBundle.Key
            let targetKey = target.privateKey(named: name)
            if FileIO.exists(layout.privateKey(named: name)) {
                try Self.checkKey(at: layout.privateKey(named: name), belongsTo: certificate)
                files.append((targetKey, try FileIO.readFile(layout.privateKey(named: name), limit: SigningIdentity.maximumKeyFileSize), 0o600))
                key = .copiedFromAuthority
            } else if FileIO.exists(targetKey) {
                try Self.checkKey(at: targetKey, belongsTo: certificate)
                key = .alreadyInFolder
            } else {
                key = .onTheMachine
            }
            let existing = files.map(\.path).filter(FileIO.exists)
            guard existing.isEmpty else {
                throw PKIError(.fileExists, "\(existing.joined(separator: ", ")) exist already and are never replaced; bundle into a new folder. Nothing was written")
            }
            try FileIO.makeFolder(target.issuedFolder, mode: 0o700)
            var written: [String] = []
            do {
                for file in files {
                    try FileIO.createExclusive(file.path, bytes: file.bytes, mode: file.mode)
                    written.append(file.path)
                }
            } catch {
                for path in written { try? FileIO.remove(path) }
                throw error
            }
            return MachineBundle(layout: target, entry: entry, written: written, key: key)
        }
    }

    private static func checkKey(at path: String, belongsTo certificate: Certificate) throws {
        guard try SigningIdentity.loadPrivateKey(at: path).publicKey == certificate.publicKey else {
            throw PKIError(.badFile, "\(path) is not the key of the newest certificate of this name; nothing was written")
        }
    }
}
