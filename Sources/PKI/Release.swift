/// The release of MiniTorrent the four programs belong to; `--version` prints it, and it changes
/// whenever a format or protocol described in docs/PROTOCOL.md does.
public enum Release {
    public static let version = "0.9.0"
}
