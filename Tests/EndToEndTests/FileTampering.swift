import Foundation
import PKITesting

/// Overwrites two bytes at each offset of the file at `path` and restores its size and
/// timestamps, so a seeder's own change check passes and it serves bad bytes.
func corruptKeepingTimestamps(_ path: String, at offsets: [Int]) throws {
    var info = stat()
    guard stat(path, &info) == 0 else { throw CocoaError(.fileNoSuchFile) }
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    for offset in offsets {
        try handle.seek(toOffset: UInt64(offset))
        handle.write(Data([0xde, 0xad]))
    }
    try handle.close()
    var times = [info.st_atim, info.st_mtim]
    guard utimensat(AT_FDCWD, path, &times, 0) == 0 else { throw CocoaError(.fileWriteUnknown) }
}

/// A copy of `peer`'s files from the CA folder as they are now (CA, CRL, certificate and key), as
/// that peer's own machine holds them; a later revocation does not reach the copy.
func machineCopy(of peer: String, from ca: TestAuthority) throws -> String {
    let copy = ca.folder.file("\(peer)-pki")
    try FileManager.default.createDirectory(atPath: "\(copy)/issued", withIntermediateDirectories: true)
    for file in ["ca.crt", "crl.pem", "issued/\(peer).crt", "issued/\(peer).key"] {
        try FileManager.default.copyItem(atPath: "\(ca.layout.folder)/\(file)", toPath: "\(copy)/\(file)")
    }
    return copy
}
