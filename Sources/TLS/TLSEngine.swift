import PKI

/// The outcome of one engine step: done with a value, waiting for more bytes from the network
/// (WANT_READ / WANT_WRITE), or failed for good.
public enum TLSStep<Value> {
    case complete(Value)
    case incomplete
    case failed(TLSError)
}

/// A TLS 1.3 endpoint that knows nothing of sockets: the caller feeds it ciphertext from the
/// network and sends what it drains, and reads and writes plaintext through it. OpenSSL and
/// GnuTLS sit behind this seam; ``TLSHandler`` drives any of them inside a SwiftNIO channel.
public protocol TLSEngine: AnyObject {
    /// Hands the engine bytes received from the network.
    func consumeCiphertext(_ bytes: UnsafeRawBufferPointer)
    /// Advances the handshake; completes with the other side's verified identity.
    func handshake() -> TLSStep<VerifiedIdentity>
    /// Decrypts into `buffer`; `.complete(0)` means the other side closed cleanly (close_notify).
    func readPlaintext(into buffer: UnsafeMutableRawBufferPointer) -> TLSStep<Int>
    /// Encrypts all of `bytes` (the ciphertext waits in the engine until drained).
    func writePlaintext(_ bytes: UnsafeRawBufferPointer) -> TLSStep<Void>
    /// How many ciphertext bytes wait to be sent.
    var pendingCiphertext: Int { get }
    /// Moves up to `buffer.count` waiting ciphertext bytes into `buffer`; returns how many.
    func drainCiphertext(into buffer: UnsafeMutableRawBufferPointer) -> Int
    /// Queues a close_notify alert.
    func shutdown()
    /// The other side's identity, once the handshake has verified it.
    var peerIdentity: VerifiedIdentity? { get }
}
