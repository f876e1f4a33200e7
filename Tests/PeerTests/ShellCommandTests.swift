import Peer
import Testing
import Wire

/// The shell's word splitting and command reading, without a running peer.
@Suite struct ShellCommandTests {
    private func failure(_ line: String) -> CommandFailure? {
        do {
            _ = try ShellCommand.parse(line)
            return nil
        } catch {
            return error
        }
    }

    @Test func wordsSplitOnBlanksAndKeepQuotedSpaces() throws {
        #expect(try ShellWords.split("  share\ta.bin   b.mtorrent ") == ["share", "a.bin", "b.mtorrent"])
        #expect(try ShellWords.split(#"share "my file.bin" 'my file.mtorrent'"#) == ["share", "my file.bin", "my file.mtorrent"])
        #expect(try ShellWords.split(#"get x my\ file.bin"#) == ["get", "x", "my file.bin"])
        #expect(try ShellWords.split(#"a"b c"'d e'f"#) == ["ab cd ef"])
        #expect(try ShellWords.split(#"'' """#) == ["", ""])
    }

    @Test func escapesFollowTheShellRules() throws {
        #expect(try ShellWords.split(#""a \"quoted\" \\ word""#) == [#"a "quoted" \ word"#])
        #expect(try ShellWords.split(#""keep \n as is""#) == [#"keep \n as is"#])
        #expect(try ShellWords.split(#"'single \ keeps all'"#) == [#"single \ keeps all"#])
        #expect(try ShellWords.split(#"\'\"\\"#) == [#"'"\"#])
    }

    @Test func anOpenQuoteOrALoneBackslashIsAClearError() {
        for line in [#"share "my file.bin b.mtorrent"#, "get 'x out", #"status \"#] {
            let error = failure(line)
            #expect(error?.code == .invalidArguments, "\(line)")
        }
        #expect(failure(#"share "a"#)?.message.contains("double quote") == true)
        #expect(failure("share 'a")?.message.contains("single quote") == true)
    }

    @Test func commandsAreReadWithTheirArguments() throws {
        #expect(try ShellCommand.parse(#"share "my file.bin" my.mtorrent"#) == .share(file: "my file.bin", mtorrent: "my.mtorrent"))
        #expect(try ShellCommand.parse("get a.mtorrent ./") == .get(mtorrent: "a.mtorrent", saveTo: "./"))
        #expect(try ShellCommand.parse("remove a.mtorrent") == .remove(mtorrent: "a.mtorrent"))
        #expect(try ShellCommand.parse("allow 'a b.mtorrent'") == .allow(mtorrent: "a b.mtorrent"))
        #expect(ShellCommand.helpText.contains("allow <mtorrent>"))
        #expect(try ShellCommand.parse("status") == .status)
        #expect(try ShellCommand.parse("help") == .help)
        #expect(try ShellCommand.parse(" exit ") == .exit)
    }

    @Test func anEmptyLineIsNothingToDo() throws {
        #expect(try ShellCommand.parse("") == nil)
        #expect(try ShellCommand.parse(" \t ") == nil)
    }

    @Test func aWrongArgumentCountGivesThatCommandsUsage() {
        let get = failure("get only-one")
        #expect(get?.code == .invalidArguments)
        #expect(get?.message.contains("usage: get <mtorrent> <save_location>") == true, "\(String(describing: get))")
        #expect(failure("status now")?.message.contains("usage: status") == true)
        #expect(failure("share a b c")?.message.contains("usage: share <file> <mtorrent>") == true)
    }

    @Test func anUnknownCommandIsNamedWithANearMiss() {
        let near = failure("shar a b")
        #expect(near?.code == .unknownCommand)
        #expect(near?.message == "'shar' is not a command; did you mean 'share'? Type help for the list")
        let far = failure("fetch everything")
        #expect(far?.code == .unknownCommand)
        #expect(far?.message == "'fetch' is not a command; type help for the list")
    }

    @Test func helpIsOneLineListingEveryCommand() {
        #expect(!ShellCommand.helpText.contains("\n"))
        for (name, _) in ShellCommand.usages { #expect(ShellCommand.helpText.contains(name)) }
    }

    @Test func anOverlongLineIsRefused() {
        #expect(failure("status " + String(repeating: " ", count: ShellCommand.maximumLineBytes))?.code == .invalidArguments)
    }

    @Test func commandsNameTheirPathsAbsoluteAndStandardized() {
        #expect(ShellCommand.share(file: "a", mtorrent: "x/../a.mtorrent").paths(relativeTo: "/w") == ["/w/a", "/w/a.mtorrent"])
        #expect(ShellCommand.get(mtorrent: "./a.mtorrent", saveTo: "/tmp/out").paths(relativeTo: "/w") == ["/w/a.mtorrent", "/tmp/out"])
        #expect(ShellCommand.status.paths(relativeTo: "/w").isEmpty)
    }
}
