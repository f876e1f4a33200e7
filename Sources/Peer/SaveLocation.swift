import Foundation
import MTorrentFormat

/// Where a `get` writes: an open folder and a plain file name in it. The folder is reached by
/// opening each folder the user named in turn with `O_NOFOLLOW`, so no symbolic link is ever
/// followed and nothing can swap one in between the check and the write; `.` stays, `..` goes
/// back to the folder opened before it (or, at the start, to the real parent). A location that
/// ends in `/`, `.` or `..`, or that names an existing folder, means "into that folder, under
/// the `.mtorrent`'s file name". Owns `folder` until ``PartFile`` takes it.
struct SaveLocation {
    /// The open folder (a descriptor for the `*at` calls).
    let folder: Int32
    /// The file name inside `folder`.
    let name: String
    /// The path as the user sees it, for messages: the location typed, plus the file name when
    /// the location is a folder.
    let path: String

    /// Opens the folder of `location`; `defaultName` is the file name when it names a folder.
    static func open(_ location: String, defaultName: String) throws(CommandFailure) -> SaveLocation {
        guard !location.isEmpty, !location.contains("\0") else {
            throw CommandFailure(.invalidArguments, "the save location is empty or holds a NUL character")
        }
        var components = location.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var namesFolder = location.hasSuffix("/") || components.last.map { $0 == "." || $0 == ".." } ?? true
        var name = namesFolder ? defaultName : components.removeLast()
        let start = location.hasPrefix("/") ? "/" : "."
        var opened = [Foundation.open(start, O_RDONLY | O_DIRECTORY | O_CLOEXEC)]
        guard opened[0] >= 0 else {
            throw CommandFailure(.permissionDenied, "cannot open the folder \(start): \(String(cString: strerror(errno)))")
        }
        defer { for fd in opened.dropLast() { close(fd) } }
        var walked = location.hasPrefix("/") ? "/" : ""
        do throws(CommandFailure) {
            for component in components where component != "." {
                walked += (walked.isEmpty || walked.hasSuffix("/") ? "" : "/") + component
                if component == "..", opened.count > 1 {
                    close(opened.removeLast())
                    continue
                }
                let fd = try openFolder(component, in: opened.last!, shownAs: walked, location: location)
                if component == ".." {
                    close(opened[0])
                    opened[0] = fd
                } else {
                    opened.append(fd)
                }
            }
            var info = stat()
            if !namesFolder, fstatat(opened.last!, name, &info, AT_SYMLINK_NOFOLLOW) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
                opened.append(try openFolder(name, in: opened.last!, shownAs: location, location: location))
                namesFolder = true
                name = defaultName
            }
        } catch {
            close(opened.last!)
            throw error
        }
        if let problem = FileNameRules.problem(with: name) {
            close(opened.last!)
            throw CommandFailure(.invalidArguments, "cannot save as '\(name)': \(problem)")
        }
        var shown = location
        if namesFolder {
            while shown.hasSuffix("/") { shown.removeLast() }
            shown += "/" + name
        }
        return SaveLocation(folder: opened.last!, name: name, path: shown)
    }

    /// Opens the folder `component` inside `parent` without following a symbolic link.
    private static func openFolder(_ component: String, in parent: Int32, shownAs walked: String, location: String) throws(CommandFailure) -> Int32 {
        let fd = openat(parent, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd >= 0 { return fd }
        let reason = errno
        var info = stat()
        if fstatat(parent, component, &info, AT_SYMLINK_NOFOLLOW) == 0, (info.st_mode & S_IFMT) == S_IFLNK {
            throw CommandFailure(.invalidArguments, "the save location \(location) goes through a symbolic link (\(walked)); give a path without one")
        }
        switch reason {
        case ENOENT, ENOTDIR:
            throw CommandFailure(.invalidArguments, "the folder \(walked) does not exist (or is not a folder); create it or choose another save location")
        case EACCES, EPERM:
            throw CommandFailure(.permissionDenied, "this peer may not enter the folder \(walked); choose another save location")
        default:
            throw CommandFailure(.invalidArguments, "cannot open the folder \(walked): \(String(cString: strerror(reason)))")
        }
    }
}
