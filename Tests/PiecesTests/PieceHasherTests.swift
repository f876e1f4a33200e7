import Crypto
import Foundation
import PKITesting
import Pieces
import Testing

@Suite struct PieceHasherTests {
    private func randomFile(_ folder: TemporaryFolder, size: Int) throws -> (String, [UInt8]) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let path = folder.file("data.bin")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (path, bytes)
    }

    /// The expected hashes, computed with swift-crypto: an implementation independent of ours.
    private func referenceHashes(_ bytes: [UInt8], pieceSize: Int) -> [[UInt8]] {
        stride(from: 0, to: bytes.count, by: pieceSize).map { start in
            Array(SHA256.hash(data: bytes[start..<min(start + pieceSize, bytes.count)]))
        }
    }

    @Test(arguments: [1, 2, 3, 8])
    func pieceHashesMatchAnIndependentSHA256(workers: Int) throws {
        let folder = TemporaryFolder()
        let (path, bytes) = try randomFile(folder, size: 5 * 16 * 1024 + 777)
        let hashed = try PieceHasher.hashFile(at: path, pieceSize: 16 * 1024, workers: workers)
        #expect(hashed.layout.pieceCount == 6)
        #expect(hashed.pieceHashes == referenceHashes(bytes, pieceSize: 16 * 1024))
    }

    @Test func piecesLargerThanTheReadBufferHashCorrectly() throws {
        let folder = TemporaryFolder()
        let pieceSize = 2 * PieceHasher.readBufferSize
        let (path, bytes) = try randomFile(folder, size: pieceSize + PieceHasher.readBufferSize + 5)
        let hashed = try PieceHasher.hashFile(at: path, pieceSize: pieceSize)
        #expect(hashed.pieceHashes == referenceHashes(bytes, pieceSize: pieceSize))
    }

    @Test func rootIsTheHashOfSizesAndPieceHashes() throws {
        let folder = TemporaryFolder()
        let (path, bytes) = try randomFile(folder, size: 40_000)
        let hashed = try PieceHasher.hashFile(at: path, pieceSize: 16 * 1024)
        var message: [UInt8] = [0, 0, 0, 0, 0, 0, 0x9c, 0x40, 0, 0, 0x40, 0]
        for hash in referenceHashes(bytes, pieceSize: 16 * 1024) { message += hash }
        #expect(hashed.root == Array(SHA256.hash(data: message)))
    }

    @Test func theSameBytesInAnotherLayoutHaveAnotherRoot() throws {
        let folder = TemporaryFolder()
        let (path, _) = try randomFile(folder, size: 40_000)
        let small = try PieceHasher.hashFile(at: path, pieceSize: 16 * 1024)
        let large = try PieceHasher.hashFile(at: path, pieceSize: 64 * 1024)
        #expect(small.root != large.root)
    }

    @Test func anEmptyFileHasNoPiecesAndARoot() throws {
        let folder = TemporaryFolder()
        let (path, _) = try randomFile(folder, size: 0)
        let hashed = try PieceHasher.hashFile(at: path)
        #expect(hashed.pieceHashes.isEmpty)
        #expect(hashed.root == Array(SHA256.hash(data: [0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0] as [UInt8])))
    }

    @Test func progressReachesTheFileSize() throws {
        let folder = TemporaryFolder()
        let (path, _) = try randomFile(folder, size: 100_000)
        let seen = Recorder()
        _ = try PieceHasher.hashFile(at: path, pieceSize: 16 * 1024, progress: { seen.record($0) })
        #expect(seen.maximum == 100_000)
    }

    @Test func aMissingFileIsAClearError() {
        #expect {
            try PieceHasher.hashFile(at: "/nonexistent/file")
        } throws: { error in
            "\(error)".contains("no such file")
        }
    }

    @Test func aFolderIsRefused() {
        let folder = TemporaryFolder()
        #expect {
            try PieceHasher.hashFile(at: folder.path)
        } throws: { error in
            "\(error)".contains("not a regular file")
        }
    }
}

private final class Recorder: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [UInt64] = []

    func record(_ value: UInt64) { lock.withLock { values.append(value) } }
    var maximum: UInt64? { lock.withLock { values.max() } }
}
