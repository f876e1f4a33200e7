import FileIO
import Foundation

/// Every file under a folder with its bytes and permission bits, to prove that a refused
/// operation left the folder byte for byte as it was.
public struct FolderSnapshot: Equatable, Sendable {
    /// Relative path → (mode, bytes) of every regular file.
    public let files: [String: FileState]

    /// One file's permission bits and content.
    public struct FileState: Equatable, Sendable {
        public let mode: mode_t
        public let bytes: [UInt8]
    }

    public init(of folder: String) throws {
        var files: [String: FileState] = [:]
        let enumerator = FileManager.default.enumerator(atPath: folder)
        while let relative = enumerator?.nextObject() as? String {
            let path = "\(folder)/\(relative)"
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else { continue }
            files[relative] = FileState(mode: try FileIO.mode(of: path), bytes: try FileIO.readFile(path, limit: 64 << 20))
        }
        self.files = files
    }

    /// The relative paths of the files whose name ends with `suffix`.
    public func paths(endingWith suffix: String) -> [String] {
        files.keys.filter { $0.hasSuffix(suffix) }.sorted()
    }
}
