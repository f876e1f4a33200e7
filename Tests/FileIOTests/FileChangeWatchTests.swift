import FileIO
import Foundation
import Testing

@Suite struct FileChangeWatchTests {
    private func folder() throws -> String {
        let path = NSTemporaryDirectory() + "watch-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func nothingChangedIsNoChange() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileIO.replaceAtomically("\(dir)/a", bytes: Array("one".utf8), mode: 0o644)
        var watch = FileChangeWatch(paths: ["\(dir)/a", "\(dir)/missing"])
        let look1 = watch.changed()
        #expect(!look1)
        let look2 = watch.changed()
        #expect(!look2)
    }

    @Test func aReplacedFileIsOneChangeReportedOnce() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileIO.replaceAtomically("\(dir)/a", bytes: Array("one".utf8), mode: 0o644)
        var watch = FileChangeWatch(paths: ["\(dir)/a"])
        // Same size, possibly the same modification second: the new inode still tells.
        try FileIO.replaceAtomically("\(dir)/a", bytes: Array("two".utf8), mode: 0o644)
        let look3 = watch.changed()
        #expect(look3)
        let look4 = watch.changed()
        #expect(!look4)
    }

    @Test func aFileThatAppearsOrVanishesIsAChange() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var watch = FileChangeWatch(paths: ["\(dir)/a"])
        try FileIO.replaceAtomically("\(dir)/a", bytes: Array("one".utf8), mode: 0o644)
        let look5 = watch.changed()
        #expect(look5)
        try FileIO.remove("\(dir)/a")
        let look6 = watch.changed()
        #expect(look6)
    }

    @Test func aFileRewrittenInPlaceWithAnotherSizeIsAChange() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileIO.replaceAtomically("\(dir)/a", bytes: Array("one".utf8), mode: 0o644)
        var watch = FileChangeWatch(paths: ["\(dir)/a"])
        let handle = try #require(FileHandle(forWritingAtPath: "\(dir)/a"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("more".utf8))
        try handle.close()
        let look7 = watch.changed()
        #expect(look7)
    }
}
