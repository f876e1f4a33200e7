import Foundation

/// A throwaway PostgreSQL 15 server for tests and benchmarks: `initdb` into a temporary folder
/// and `pg_ctl` serving on 127.0.0.1 at a free port, with its socket in that folder. Run as root,
/// it runs as the `postgres` user (`runuser`), owning the folder. It is stopped, and the folder
/// removed, when the value goes away; ``stop()`` and ``start()`` restart it in between.
public final class TestPostgres: @unchecked Sendable {
    /// Where Debian's PostgreSQL 15 puts its programs.
    public static let binaries = "/usr/lib/postgresql/15/bin"
    /// The superuser (trusted, no password) and the database tests use.
    public static let user = "minitorrent"
    public static let database = "registry"

    /// Whether the PostgreSQL programs are installed (scripts/install-deps installs them).
    public static var available: Bool { FileManager.default.isExecutableFile(atPath: "\(binaries)/initdb") }

    /// The message a test skipped for want of PostgreSQL prints.
    public static let absence = "PostgreSQL 15 is not installed (\(binaries)/initdb is missing): run scripts/install-deps"

    public let folder: String
    public let port: Int
    private var dataFolder: String { "\(folder)/data" }

    /// The registry address of the test database.
    public var address: String { "postgres://\(Self.user)@127.0.0.1:\(port)/\(Self.database)" }

    /// Creates and starts the server; `durable` keeps fsync on (for benchmarks; tests go faster without).
    public init(durable: Bool = false) throws {
        var template = Array("/tmp/minitorrent-postgres-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestPostgresError(step: "mkdtemp", output: String(cString: strerror(errno))) }
        folder = String(cString: made)
        port = try Self.freePort()
        if getuid() == 0 {
            try Self.run("/bin/chown", ["postgres:postgres", folder], asPostgres: false)
        }
        var options = ["-A", "trust", "-U", Self.user, "-D", dataFolder, "-E", "UTF8", "--locale=C.UTF-8"]
        if !durable { options.append("-N") }
        try Self.run("\(Self.binaries)/initdb", options)
        let settings = durable ? "" : "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        try Self.run("/bin/sh", ["-c", "printf '%s' \"$1\" >> \"$2\"", "sh", settings + "max_connections = 200\n", "\(dataFolder)/postgresql.conf"])
        try start()
        try Self.run("\(Self.binaries)/createdb", ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.user, Self.database])
    }

    /// Starts the server and waits until it accepts connections.
    public func start() throws {
        try Self.run("\(Self.binaries)/pg_ctl", ["-D", dataFolder, "-l", "\(folder)/server.log", "-w", "-t", "60", "-o", "-k \(folder) -p \(port) -h 127.0.0.1", "start"])
    }

    /// Stops the server (fast: connections are closed at once) and waits until it is down.
    public func stop() throws {
        try Self.run("\(Self.binaries)/pg_ctl", ["-D", dataFolder, "-m", "fast", "-w", "-t", "60", "stop"])
    }

    /// Serves TLS from now on with the certificate and key in these PEM files (restarts the server).
    public func enableTLS(certificate: String, key: String) throws {
        for (source, name) in [(certificate, "server.crt"), (key, "server.key")] {
            let target = "\(dataFolder)/\(name)"
            try FileManager.default.copyItem(atPath: source, toPath: target)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: target)
            if getuid() == 0 { try Self.run("/bin/chown", ["postgres:postgres", target], asPostgres: false) }
        }
        try Self.run("/bin/sh", ["-c", "printf '%s' \"$1\" >> \"$2\"", "sh", "ssl = on\n", "\(dataFolder)/postgresql.conf"])
        try stop()
        try start()
    }

    /// Runs `sql` through psql and returns what it printed (unaligned, tuples only).
    @discardableResult
    public func psql(_ sql: String) throws -> String {
        try Self.run("\(Self.binaries)/psql", ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.user, "-d", Self.database, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
    }

    deinit {
        if FileManager.default.fileExists(atPath: "\(dataFolder)/postmaster.pid") { try? stop() }
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// A port nobody listens on now: bound to port 0 and released.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestPostgresError(step: "socket", output: String(cString: strerror(errno))) }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestPostgresError(step: "bind", output: String(cString: strerror(errno))) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Runs a program (as the postgres user when this process is root) and returns its output;
    /// throws with the output when it fails. It is spawned and waited for directly: `pg_ctl`
    /// leaves a server behind that inherits descriptors, which would keep Foundation's `Process`
    /// waiting.
    @discardableResult
    private static func run(_ path: String, _ arguments: [String], asPostgres: Bool = true) throws -> String {
        let command = asPostgres && getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--", path] + arguments : [path] + arguments
        let log = "/tmp/minitorrent-postgres-\(UUID().uuidString).out"
        defer { unlink(log) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, command[0], &actions, nil, &argv, environ)
        guard spawned == 0 else { throw TestPostgresError(step: command.joined(separator: " "), output: String(cString: strerror(spawned))) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1, errno == EINTR {}
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        // Exited normally with status 0.
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw TestPostgresError(step: command.joined(separator: " "), output: output)
        }
        return output
    }
}

/// A step of setting up or running the test server failed.
public struct TestPostgresError: Error, CustomStringConvertible {
    public let step: String
    public let output: String

    public var description: String { "\(step) failed: \(output)" }
}
