import Foundation
import FuzzTargets

#if FUZZING
import CFuzzerDriver

/// The target this libFuzzer binary runs, from `MTFUZZ_TARGET` (scripts/fuzz sets it).
let selectedTarget: FuzzTarget = {
    guard let name = ProcessInfo.processInfo.environment["MTFUZZ_TARGET"], let target = FuzzTarget(rawValue: name) else {
        fatalError("set MTFUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return target
}()

/// libFuzzer's driver, given every input in turn to the selected target; its flags are libFuzzer's.
@main
struct Fuzz {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        _ = selectedTarget
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            selectedTarget.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
            return 0
        })
    }
}
#else
/// Without libFuzzer: `mtfuzz TARGET FILE|FOLDER…` replays inputs through a target (a crash
/// libFuzzer found can be replayed and debugged in a normal build).
@main
struct Replay {
    static func main() throws {
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
            print("usage: mtfuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE|FOLDER…")
            exit(2)
        }
        var count = 0
        for path in arguments.dropFirst() {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw CocoaError(.fileNoSuchFile) }
            let files = isFolder.boolValue ? try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { "\(path)/\($0)" } : [path]
            for file in files {
                target.run(Array(try Data(contentsOf: URL(fileURLWithPath: file))))
                count += 1
            }
        }
        print("\(name): \(count) inputs replayed, no failure")
    }
}
#endif
