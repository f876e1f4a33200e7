import COpenSSL

/// SHA-256 from the system's libcrypto, the same implementation `openssl dgst -sha256` runs.
/// One value hashes any number of messages, one after another; it is not shared between threads.
public final class SHA256Digest {
    /// Length of a digest in bytes.
    public static let length = 32

    private let context: OpaquePointer

    public init() {
        guard let context = EVP_MD_CTX_new() else { fatalError("libcrypto could not allocate a digest context") }
        self.context = context
        reset()
    }

    deinit {
        EVP_MD_CTX_free(context)
    }

    /// Starts a new message.
    public func reset() {
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else { fatalError("libcrypto refused to start SHA-256") }
    }

    /// Adds bytes to the message.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        guard EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) == 1 else { fatalError("libcrypto refused SHA-256 input") }
    }

    /// Adds bytes to the message.
    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Ends the message and returns its digest; call ``reset()`` before the next message.
    public func finish() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Self.length)
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &digest, &length) == 1, length == Self.length else {
            fatalError("libcrypto could not finish SHA-256")
        }
        return digest
    }

    /// The digest of one whole message.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        let digest = SHA256Digest()
        digest.update(bytes)
        return digest.finish()
    }
}
