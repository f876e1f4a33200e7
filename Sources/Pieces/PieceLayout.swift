/// How a file is cut into pieces: every piece has `pieceSize` bytes except the last, which holds
/// the rest. A zero-byte file has no pieces.
public struct PieceLayout: Sendable, Equatable {
    /// Smallest piece size accepted (16 KiB).
    public static let minimumPieceSize = 16 * 1024
    /// Largest piece size accepted (64 MiB).
    public static let maximumPieceSize = 64 * 1024 * 1024
    /// Most pieces one file may have; with 64 MiB pieces that is 16 TiB.
    public static let maximumPieceCount = 262_144
    /// The default aims at about this many pieces, so that the `.mtorrent` stays small and a swarm
    /// has enough pieces to spread over its peers.
    public static let targetPieceCount = 1024

    public let fileSize: UInt64
    public let pieceSize: Int
    public let pieceCount: Int

    /// A layout with an explicit piece size (a power of two within the limits).
    public init(fileSize: UInt64, pieceSize: Int) throws(PieceLayoutError) {
        guard pieceSize >= Self.minimumPieceSize, pieceSize <= Self.maximumPieceSize, pieceSize & (pieceSize - 1) == 0 else {
            throw .invalidPieceSize(pieceSize)
        }
        let count = fileSize / UInt64(pieceSize) + (fileSize % UInt64(pieceSize) == 0 ? 0 : 1)
        guard count <= UInt64(Self.maximumPieceCount) else { throw .tooManyPieces(fileSize: fileSize, pieceSize: pieceSize) }
        self.fileSize = fileSize
        self.pieceSize = pieceSize
        self.pieceCount = Int(count)
    }

    /// A layout with the default piece size for `fileSize`.
    public init(fileSize: UInt64) throws(PieceLayoutError) {
        try self.init(fileSize: fileSize, pieceSize: Self.defaultPieceSize(forFileSize: fileSize))
    }

    /// The smallest power of two, at least 256 KiB and at most 64 MiB, that cuts the file into about
    /// ``targetPieceCount`` pieces or fewer (1 GiB → 1 MiB pieces; 64 GiB and more → 64 MiB).
    public static func defaultPieceSize(forFileSize fileSize: UInt64) -> Int {
        var size = 256 * 1024
        while size < maximumPieceSize, fileSize > UInt64(size) * UInt64(targetPieceCount) {
            size *= 2
        }
        return size
    }

    /// The byte offset of piece `index` in the file.
    public func offset(ofPiece index: Int) -> UInt64 {
        UInt64(index) * UInt64(pieceSize)
    }

    /// The length of piece `index`: `pieceSize`, or less for the last one.
    public func length(ofPiece index: Int) -> Int {
        Int(min(UInt64(pieceSize), fileSize - offset(ofPiece: index)))
    }
}

/// Why a file cannot be laid out in pieces.
public enum PieceLayoutError: Error, Equatable, CustomStringConvertible {
    case invalidPieceSize(Int)
    case tooManyPieces(fileSize: UInt64, pieceSize: Int)

    public var description: String {
        switch self {
        case .invalidPieceSize(let size):
            return "piece size \(size) is not a power of two between \(PieceLayout.minimumPieceSize) and \(PieceLayout.maximumPieceSize) bytes"
        case .tooManyPieces(let fileSize, let pieceSize):
            return "a \(fileSize)-byte file in \(pieceSize)-byte pieces needs more than \(PieceLayout.maximumPieceCount) pieces; choose a larger piece size"
        }
    }
}
