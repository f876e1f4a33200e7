/// The rules for the file name a `.mtorrent` carries. It is a default for the downloader, never a
/// path: one component, no separators, no control characters, nothing that means "this folder"
/// or "the parent".
public enum FileNameRules {
    /// Longest accepted name in UTF-8 bytes (the usual file-system limit).
    public static let maximumBytes = 255

    /// Returns `nil` if `name` is acceptable, otherwise a sentence saying why not.
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "the file name is empty" }
        if name.utf8.count > maximumBytes { return "the file name is longer than \(maximumBytes) bytes" }
        if name == "." || name == ".." { return "the file name '\(name)' names a folder, not a file" }
        if name.contains("/") || name.contains("\\") { return "the file name contains a path separator" }
        if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            return "the file name contains a control character"
        }
        if name.first!.isWhitespace || name.last!.isWhitespace { return "the file name starts or ends with white space" }
        return nil
    }
}
