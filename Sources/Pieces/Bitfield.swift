/// Which pieces of a file a peer holds: one bit per piece, most significant bit first, as sent in
/// a BITFIELD frame. Spare bits after the last piece are always zero.
public struct Bitfield: Equatable, Sendable {
    /// Number of pieces the field describes.
    public let count: Int
    /// The packed bits, `(count + 7) / 8` bytes.
    public private(set) var bytes: [UInt8]
    /// Number of pieces held.
    public private(set) var heldCount: Int

    /// A field with no piece held.
    public init(count: Int) {
        self.count = count
        bytes = [UInt8](repeating: 0, count: (count + 7) / 8)
        heldCount = 0
    }

    /// A field with every piece held.
    public static func full(count: Int) -> Bitfield {
        var field = Bitfield(count: count)
        for index in 0..<count { field.insert(index) }
        return field
    }

    /// Reads a field received from another peer: the length must be exact and the spare bits zero.
    public init?(bytes: [UInt8], count: Int) {
        guard bytes.count == (count + 7) / 8 else { return nil }
        if count % 8 != 0, let last = bytes.last, last & (0xff >> UInt8(count % 8)) != 0 { return nil }
        self.count = count
        self.bytes = bytes
        heldCount = bytes.reduce(0) { $0 + $1.nonzeroBitCount }
    }

    public var isComplete: Bool { heldCount == count }

    public func contains(_ index: Int) -> Bool {
        index >= 0 && index < count && bytes[index / 8] & (0x80 >> UInt8(index % 8)) != 0
    }

    /// Marks `index` as held; returns false if it already was.
    @discardableResult
    public mutating func insert(_ index: Int) -> Bool {
        precondition(index >= 0 && index < count, "piece \(index) is outside a field of \(count)")
        guard !contains(index) else { return false }
        bytes[index / 8] |= 0x80 >> UInt8(index % 8)
        heldCount += 1
        return true
    }

    /// Marks `index` as not held; returns false if it was not.
    @discardableResult
    public mutating func remove(_ index: Int) -> Bool {
        precondition(index >= 0 && index < count, "piece \(index) is outside a field of \(count)")
        guard contains(index) else { return false }
        bytes[index / 8] &= ~(0x80 >> UInt8(index % 8))
        heldCount -= 1
        return true
    }
}
