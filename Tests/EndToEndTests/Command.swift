import Foundation

/// Runs one of the package's built executables (or a system tool) and captures what it printed.
struct Command {
    struct Result {
        let status: Int32
        let output: String
        let errors: String
    }

    /// The folder holding the built products: the one this test bundle was built into.
    static let productsFolder: URL = {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var folder = executable.deletingLastPathComponent()
        while folder.path != "/" {
            if FileManager.default.isExecutableFile(atPath: folder.appendingPathComponent("mtca").path) { return folder }
            folder = folder.deletingLastPathComponent()
        }
        fatalError("cannot find the built mtca next to \(executable.path)")
    }()

    /// Runs a built product by name; `input`, if given, is its whole standard input, through a
    /// pipe, or else the file at `inputFile`.
    static func product(_ name: String, _ arguments: [String], in folder: String, input: String? = nil, inputFile: String? = nil) throws -> Result {
        try run(productsFolder.appendingPathComponent(name).path, arguments, in: folder, input: input, inputFile: inputFile)
    }

    /// Runs a tool found on the PATH.
    static func system(_ name: String, _ arguments: [String], in folder: String) throws -> Result {
        try run("/usr/bin/env", [name] + arguments, in: folder)
    }

    /// Runs `path` with `input` (or nothing) on its standard input; a run that takes longer than
    /// `timeout` seconds is killed and reported as status -1.
    static func run(_ path: String, _ arguments: [String], in folder: String, input: String? = nil, inputFile: String? = nil, timeout: TimeInterval = 60) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let inputPipe = Pipe()
        if input != nil {
            process.standardInput = inputPipe
        } else if let inputFile {
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inputFile))
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        try process.run()
        if let input {
            // The process reads it all, so a write larger than the pipe's buffer only waits for it.
            try inputPipe.fileHandleForWriting.write(contentsOf: Data(input.utf8))
            try inputPipe.fileHandleForWriting.close()
        }
        let deadline = Date() + timeout
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return Result(status: -1, output: String(decoding: outputData, as: UTF8.self), errors: "timed out")
        }
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            output: String(decoding: outputData, as: UTF8.self),
            errors: String(decoding: errorData, as: UTF8.self)
        )
    }
}
