import FileIO
import Foundation
import PKI

/// A folder under the system's temporary directory, removed when the value goes away.
public final class TemporaryFolder: Sendable {
    public let path: String

    public init() {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(base)/minitorrent-test-XXXXXX".utf8CString)
        let created = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(created != nil, "cannot create a temporary folder")
        path = String(cString: created!)
    }

    /// A path inside the folder.
    public func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A real CA in a temporary folder, for tests: real keys, real certificates, a real signed CRL.
public struct TestAuthority: Sendable {
    public let folder: TemporaryFolder
    public let layout: PKILayout
    public let authority: CertificateAuthority

    public init(name: String = "Test CA", now: Date = Date()) throws {
        folder = TemporaryFolder()
        layout = PKILayout(folder: folder.file("pki"))
        authority = try CertificateAuthority.initialize(at: layout, name: name, now: now)
    }

    /// The trust store as a tracker or peer would load it from the files right now.
    public func trust() throws -> TrustStore {
        try TrustStore.load(from: layout)
    }

    /// Issues a certificate and loads it with its key.
    @discardableResult
    public func identity(_ request: IssueRequest, now: Date = Date()) throws -> SigningIdentity {
        try authority.issue(request, now: now)
        return try SigningIdentity.load(named: request.name, from: layout)
    }

    /// Issues a peer certificate and loads it with its key.
    @discardableResult
    public func peer(_ name: String, groups: [String] = [], days: Int = 30, now: Date = Date()) throws -> SigningIdentity {
        try identity(.peer(name: name, groups: groups, days: days), now: now)
    }
}
