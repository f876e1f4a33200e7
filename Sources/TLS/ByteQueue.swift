/// A first-in, first-out queue of bytes that reuses its storage: what has been taken is dropped
/// before more is added, so it never holds more than what is waiting.
struct ByteQueue {
    private var storage: [UInt8] = []
    private var start = 0

    var count: Int { storage.count - start }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 {
            storage.removeFirst(start)
            start = 0
        }
        storage.append(contentsOf: bytes)
    }

    /// Moves up to `buffer.count` bytes into `buffer`; returns how many.
    mutating func take(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let taken = min(buffer.count, count)
        guard taken > 0 else { return 0 }
        storage.withUnsafeBytes { source in
            buffer.baseAddress!.copyMemory(from: source.baseAddress! + start, byteCount: taken)
        }
        start += taken
        if start == storage.count {
            storage.removeAll(keepingCapacity: true)
            start = 0
        }
        return taken
    }
}
