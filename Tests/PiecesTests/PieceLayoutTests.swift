import Pieces
import Testing

@Suite struct PieceLayoutTests {
    static let defaultSizes: [(UInt64, Int)] = [
        (0, 256 * 1024), (1, 256 * 1024), (256 * 1024 * 1024, 256 * 1024),
        (256 * 1024 * 1024 + 1, 512 * 1024), (1 << 30, 1 << 20), (100 << 30, 64 << 20), (1 << 44, 64 << 20),
    ]

    @Test(arguments: defaultSizes)
    func defaultPieceSizeGrowsWithTheFile(fileSize: UInt64, expected: Int) {
        #expect(PieceLayout.defaultPieceSize(forFileSize: fileSize) == expected)
    }

    @Test func piecesCoverTheFileWithAShortLastPiece() throws {
        let layout = try PieceLayout(fileSize: 100_000, pieceSize: 32 * 1024)
        #expect(layout.pieceCount == 4)
        #expect(layout.length(ofPiece: 0) == 32 * 1024)
        #expect(layout.length(ofPiece: 3) == 100_000 - 3 * 32 * 1024)
        #expect(layout.offset(ofPiece: 3) == 3 * 32 * 1024)
    }

    @Test func anEmptyFileHasNoPieces() throws {
        #expect(try PieceLayout(fileSize: 0).pieceCount == 0)
    }

    @Test func anExactMultipleHasNoExtraPiece() throws {
        #expect(try PieceLayout(fileSize: 64 * 1024, pieceSize: 16 * 1024).pieceCount == 4)
    }

    @Test(arguments: [0, 1000, 8 * 1024, 48 * 1024, 128 << 20])
    func badPieceSizesAreRefused(size: Int) {
        #expect(throws: PieceLayoutError.invalidPieceSize(size)) { try PieceLayout(fileSize: 1, pieceSize: size) }
    }

    @Test func tooManyPiecesAreRefused() {
        let fileSize = UInt64(PieceLayout.maximumPieceCount) * 16 * 1024 + 1
        #expect(throws: PieceLayoutError.tooManyPieces(fileSize: fileSize, pieceSize: 16 * 1024)) {
            try PieceLayout(fileSize: fileSize, pieceSize: 16 * 1024)
        }
    }
}
