import FileIO
import X509

/// A certificate together with its private key, as one machine holds it in `issued/NAME.crt` and
/// `issued/NAME.key`: what a peer signs `.mtorrent` files with (and, later, presents in TLS).
public struct SigningIdentity: Sendable {
    public let certificate: Certificate
    public let privateKey: Certificate.PrivateKey

    /// Largest key file accepted when reading one.
    public static let maximumKeyFileSize = 16 * 1024

    /// Pairs a certificate with its key; fails if the key is not the certificate's.
    public init(certificate: Certificate, privateKey: Certificate.PrivateKey) throws {
        guard privateKey.publicKey == certificate.publicKey else {
            throw PKIError(.badFile, "the private key does not belong to the certificate of '\(certificate.subject)'")
        }
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// Loads `issued/NAME.crt` and `issued/NAME.key` from a PKI folder.
    public static func load(named name: String, from layout: PKILayout) throws -> SigningIdentity {
        if let problem = NameRules.problem(with: name, kind: "name") { throw PKIError(.invalidArgument, problem) }
        let certificatePath = layout.certificate(named: name)
        guard FileIO.exists(certificatePath) else {
            throw PKIError(.badFile, "no certificate for '\(name)' at \(certificatePath); enrol this machine with 'mtca request' here and 'mtca sign' at the CA, then copy in what 'mtca bundle' writes")
        }
        return try SigningIdentity(
            certificate: TrustStore.loadCertificate(at: certificatePath),
            privateKey: loadPrivateKey(at: layout.privateKey(named: name))
        )
    }

    /// Signs `bytes` with the profile's algorithm; returns the DER-encoded signature.
    public func sign(_ bytes: some Sequence<UInt8>) throws -> [UInt8] {
        try privateKey.sign(bytes: Array(bytes), signatureAlgorithm: CertificateProfile.signatureAlgorithm).rawRepresentation
    }

    /// Reads a PEM private key, refusing one that others can read.
    static func loadPrivateKey(at path: String) throws -> Certificate.PrivateKey {
        let mode = try FileIO.mode(of: path)
        guard mode & 0o077 == 0 else {
            throw PKIError(.badFile, "\(path) can be read by other users (mode \(String(mode, radix: 8))); run 'chmod 600 \(path)'")
        }
        do {
            return try Certificate.PrivateKey(pemEncoded: FileIO.readText(path, limit: maximumKeyFileSize))
        } catch let error as FileIOError {
            throw error
        } catch {
            throw PKIError(.badFile, "\(path) is not a PEM private key: \(error)")
        }
    }
}
