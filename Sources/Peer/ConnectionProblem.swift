import Foundation
import NIOCore
import NIOPosix
import TLS
import Wire

/// Why a connection to a tracker or to another peer gave nothing, by cause, so that a result
/// line can say what happened: the other side refused our certificate, we refused theirs, or it
/// could not be reached or broke off. Never a library's raw error text.
public enum ConnectionProblem: Error, Equatable, Sendable {
    /// Nothing listens at the address.
    case connectionRefused
    /// No answer within the deadline.
    case timedOut(seconds: Int64)
    /// The other side refused our certificate (revoked, expired, another CA's, wrong role).
    case ourCertificateRefused(String)
    /// We refused what answered: not our CA, the wrong role, or a name other than the one dialled.
    case notTrusted(String)
    /// The address cannot be reached (no route, unknown name).
    case unreachable(String)
    /// The connection closed, or what came broke the protocol.
    case brokeOff(String)

    /// The failure code a command reports when this is why no tracker answered.
    public var code: FailureCode {
        switch self {
        case .ourCertificateRefused: return .certificateRefused
        case .notTrusted: return .trackerNotTrusted
        case .connectionRefused, .timedOut, .unreachable, .brokeOff: return .trackersUnreachable
        }
    }

    /// One clause naming the other side (`party`, e.g. "tracker 10.0.0.1:7001") and the cause.
    public func sentence(about party: String) -> String {
        "\(party) \(predicate)"
    }

    /// What the other side did, as the rest of a sentence whose subject is that side.
    public var predicate: String {
        switch self {
        case .connectionRefused: return "refused the connection (is it running?)"
        case .timedOut(let seconds): return "did not answer within \(seconds) s"
        case .ourCertificateRefused(let why): return "refused our certificate (\(why))"
        case .notTrusted(let why): return "is not trusted: \(why)"
        case .unreachable(let why): return "cannot be reached: \(why)"
        case .brokeOff(let why): return why
        }
    }

    /// The cause behind an error from connecting, the TLS handshake or a protocol.
    static func cause(of error: Error, timeout: Int64) -> ConnectionProblem {
        switch error {
        case let problem as ConnectionProblem:
            return problem
        case let tls as TLSError:
            switch tls.code {
            case .ourCertificateRefused: return .ourCertificateRefused(refusal(in: tls.reason))
            case .peerCertificateRefused, .nameMismatch, .noPeerCertificate: return .notTrusted(tls.validation?.reason ?? tls.reason)
            case .handshakeTimeout: return .timedOut(seconds: timeout)
            default: return .brokeOff("broke off the TLS connection: \(tls.reason)")
            }
        case let connection as NIOConnectionError:
            if connection.dnsAError != nil, connection.dnsAAAAError != nil, connection.connectionErrors.isEmpty {
                return .unreachable("its host name cannot be resolved")
            }
            return connection.connectionErrors.lazy.map { cause(of: $0.error, timeout: timeout) }.first ?? .unreachable("no address to connect to")
        case let io as IOError:
            if io.errnoCode == ECONNREFUSED { return .connectionRefused }
            return .unreachable(String(cString: strerror(io.errnoCode)))
        case ChannelError.connectTimeout:
            return .timedOut(seconds: timeout)
        case WireError.closed:
            return .brokeOff("closed the connection without answering")
        case WireError.malformed(let what):
            return .brokeOff("sent something malformed (\(what))")
        case let wire as WireError:
            return .brokeOff("broke the protocol (\(wire))")
        default:
            return .brokeOff("failed: \(error)")
        }
    }

    /// "it says ours is revoked" from "the other side refused our certificate: revoked".
    private static func refusal(in reason: String) -> String {
        guard let range = reason.range(of: "our certificate: ") else { return reason }
        return "it says ours is " + reason[range.upperBound...]
    }
}
