import Foundation
import PKI
import Wire

/// 32 bytes read from 64 lowercase hex digits and held as four machine words: a compact
/// dictionary key that hashes fast.
struct HexWords: Hashable, Sendable {
    private let a, b, c, d: UInt64

    init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "HexWords holds 32 bytes")
        func word(_ index: Int) -> UInt64 { bytes[index..<index + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        (a, b, c, d) = (word(0), word(8), word(16), word(24))
    }

    /// Reads exactly 64 lowercase hex digits.
    init?(digits: UnsafeRawBufferPointer) {
        guard digits.count == 64, let a = Self.word(digits, at: 0), let b = Self.word(digits, at: 16),
              let c = Self.word(digits, at: 32), let d = Self.word(digits, at: 48) else { return nil }
        (self.a, self.b, self.c, self.d) = (a, b, c, d)
    }

    /// Sixteen hex digits from `start` as one word.
    private static func word(_ digits: UnsafeRawBufferPointer, at start: Int) -> UInt64? {
        guard let high = half(digits, at: start), let low = half(digits, at: start + 8) else { return nil }
        return UInt64(high) << 32 | UInt64(low)
    }

    /// Eight hex digits from `start` as 32 bits, all eight checked and decoded at once in the
    /// bytes of one machine word.
    private static func half(_ digits: UnsafeRawBufferPointer, at start: Int) -> UInt32? {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits = ones << 7
        let text = UInt64(littleEndian: digits.loadUnaligned(fromByteOffset: start, as: UInt64.self))
        guard text & highBits == 0 else { return nil }
        // With every byte below 0x80, adding 0x80 - low sets a byte's high bit exactly when it is
        // at least `low`, and adding 0x7f - high exactly when it is above `high`.
        func atLeast(_ low: UInt64) -> UInt64 { (text &+ (0x80 - low) &* ones) & highBits }
        func above(_ high: UInt64) -> UInt64 { (text &+ (0x7f - high) &* ones) & highBits }
        let decimal = atLeast(0x30) & ~above(0x39)
        let letter = atLeast(0x61) & ~above(0x66)
        guard decimal | letter == highBits else { return nil }
        // '0'…'9' end in 0…9, 'a'…'f' in 1…6 (plus 9).
        let values = (text & (ones &* 0x0f)) &+ (letter >> 7) &* 9
        // Byte i holds digit i: pair them into bytes, first digit high, then gather the bytes.
        let pairs = (values & 0x000f_000f_000f_000f) << 4 | (values >> 8) & 0x000f_000f_000f_000f
        let bytes = (pairs | pairs >> 8) & 0x0000_ffff_0000_ffff
        let packed = bytes & 0xffff | bytes >> 16 & 0xffff_0000
        return UInt32(truncatingIfNeeded: packed).byteSwapped
    }

    var bytes: [UInt8] {
        [a, b, c, d].flatMap { word in (0..<8).reversed().map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }
    }
}

/// A root hash as four machine words.
struct RootKey: Hashable, Sendable, CustomStringConvertible {
    private let words: HexWords

    init(_ file: FileID) {
        words = HexWords(bytes: file.bytes)
    }

    /// Reads 64 lowercase hex digits.
    init?(hex: UnsafeRawBufferPointer) {
        guard let words = HexWords(digits: hex) else { return nil }
        self.words = words
    }

    var description: String { file.description }

    var file: FileID { FileID(bytes: words.bytes)! }
}

/// A certificate's fingerprint as the journal and the registry hold it: its SHA-256 as four
/// machine words, or none (`-`, on lines of an earlier format that only keep an owner).
struct Fingerprint: Hashable, Sendable, CustomStringConvertible {
    private let words: HexWords?

    static let none = Fingerprint(words: nil)

    private init(words: HexWords?) {
        self.words = words
    }

    /// Reads 64 lowercase hex digits, or `-`.
    init?(text: UnsafeRawBufferPointer) {
        if text.spells("-") {
            words = nil
        } else if let words = HexWords(digits: text) {
            self.words = words
        } else {
            return nil
        }
    }

    /// Reads 64 lowercase hex digits, or `-`.
    init?(_ text: String) {
        var text = text
        guard let fingerprint = text.withUTF8({ Fingerprint(text: UnsafeRawBufferPointer($0)) }) else { return nil }
        self = fingerprint
    }

    /// The fingerprint of a verified certificate (always 64 lowercase hex digits).
    init(verified text: String) {
        guard let fingerprint = Fingerprint(text), fingerprint != .none else {
            preconditionFailure("a verified fingerprint is 64 lowercase hex digits, not '\(text)'")
        }
        self = fingerprint
    }

    var description: String { words.map { Hex.encode($0.bytes) } ?? "-" }
}

/// A claim as stored, with its signer's fingerprint spelled out.
struct ClaimView: Sendable {
    let stored: RegistryState.Claim
    let signerFingerprint: String

    var size: UInt64 { stored.size }
    var name: String { stored.name }
    var withdrawn: Bool { stored.withdrawn }
}

/// A holder spelled out, with the signer whose claim it announced.
struct HolderView: Sendable {
    let record: HolderRecord
    let signer: String
}

/// A file as the registry shows it: the stored entry with its claims and holders spelled out.
struct EntryView: Sendable {
    let stored: RegistryState.Entry
    /// By signer name.
    let claims: [String: ClaimView]
    let holders: [HolderView]

    /// Withdrawn by an admin: nobody may share the root until an admin allows it again.
    var withdrawn: Bool { stored.withdrawn }
}

/// A list that keeps its first element inline and any others in an array: most roots have one
/// claim, which then takes no allocation of its own.
struct InlineFirstList<Element: Sendable>: RandomAccessCollection, MutableCollection, Sendable {
    private var head: Element?
    /// Empty while `head` is nil.
    private var tail: [Element] = []

    init() {}

    var startIndex: Int { 0 }
    var endIndex: Int { head == nil ? 0 : 1 + tail.count }

    subscript(position: Int) -> Element {
        get { position == 0 ? head! : tail[position - 1] }
        set {
            if position == 0 { head = newValue } else { tail[position - 1] = newValue }
        }
    }

    mutating func append(_ element: Element) {
        if head == nil { head = element } else { tail.append(element) }
    }

    mutating func removeAll(where shouldBeRemoved: (Element) -> Bool) {
        let kept = filter { !shouldBeRemoved($0) }
        self = InlineFirstList()
        for element in kept { append(element) }
    }
}

/// The registry's files, claims and holders in compact form: files in an array of slots found
/// through a table of slot numbers by root (``SlotTable``); peers (by fingerprint, four machine
/// words), signers, fingerprints and addresses interned once and referred to by number; a root's
/// first claim inline in its entry; each certificate's holdings as a list of slots (for
/// heartbeats, leaves and its quota).
struct RegistryState: Sendable {
    struct Holder: Sendable {
        let peer: UInt32
        var address: UInt32
        /// The signer (interned name) whose claim this holder announced.
        var signer: UInt32
        /// Seconds since the reference date.
        var lastSeen: Double
    }

    /// One signer's claim on a root: the size and name its header gave.
    struct Claim: Sendable {
        /// Interned signer name.
        let signer: UInt32
        /// Interned fingerprint of the signer's certificate.
        let signerFingerprint: UInt32
        let size: UInt64
        let name: String
        var withdrawn = false
    }

    /// One file, as stored (what a change replaced, to undo it).
    struct Entry: Sendable {
        let root: RootKey
        var claims = InlineFirstList<Claim>()
        var holders: [Holder] = []
        /// Withdrawn by an admin, for everyone.
        var withdrawn = false
        /// When the last holder went (seconds since the reference date), or nil while held.
        var vacantSince: Double?

        /// Whether forgetting the file would lose a withdrawal.
        var hasWithdrawal: Bool { withdrawn || claims.contains(where: \.withdrawn) }

        func claimIndex(_ signer: UInt32) -> Int? { claims.firstIndex { $0.signer == signer } }
    }

    private struct Peer: Sendable {
        let name: String
        /// The fingerprint in hex, as answers show it.
        let fingerprint: String
        /// Slots of the files this certificate holds.
        var holding: [UInt32] = []
        /// The interned address it last held a file at.
        var lastAddress: UInt32?
    }

    /// Interns values: each distinct one stored once, referred to by its number.
    private struct Interned<Value: Hashable & Sendable>: Sendable {
        private(set) var values: [Value] = []
        private var numbers: [Value: UInt32] = [:]

        mutating func number(_ value: Value) -> UInt32 {
            if let number = numbers[value] { return number }
            values.append(value)
            numbers[value] = UInt32(values.count - 1)
            return UInt32(values.count - 1)
        }

        /// The number of `value`, if it was ever interned.
        func find(_ value: Value) -> UInt32? { numbers[value] }

        subscript(number: UInt32) -> Value { values[Int(number)] }
    }

    private var slots = SlotTable()
    private var entries: [Entry] = []
    private var freeSlots: [UInt32] = []
    private var peers: [Peer] = []
    private var peerNumbers: [Fingerprint: UInt32] = [:]
    private var signers = Interned<String>()
    /// Fingerprints of signers' certificates.
    private var signerFingerprints = Interned<Fingerprint>()
    private var addresses = Interned<String>()
    private(set) var holderCount = 0

    var fileCount: Int { slots.count }

    /// Makes room for `files` files at once, instead of growing step by step while a journal is read.
    mutating func reserveCapacity(files: Int) {
        entries.reserveCapacity(files)
        let entries = self.entries
        slots.reserveCapacity(files) { entries[Int($0)].root }
    }

    /// The slot of the file whose root is `root`.
    private func slot(_ root: RootKey) -> UInt32? {
        slots.find(root) { entries[Int($0)].root }
    }

    /// The number of the certificate whose fingerprint is `fingerprint` (hex), if it holds anything.
    private func peerNumber(_ fingerprint: String) -> UInt32? {
        Fingerprint(fingerprint).flatMap { peerNumbers[$0] }
    }

    // MARK: Reading

    /// The file as stored, for undoing a change.
    func stored(_ file: FileID) -> Entry? {
        slot(RootKey(file)).map { entries[Int($0)] }
    }

    private func view(_ entry: Entry) -> EntryView {
        EntryView(stored: entry, claims: claims(of: entry), holders: entry.holders.map(holderView))
    }

    private func claims(of entry: Entry) -> [String: ClaimView] {
        Dictionary(uniqueKeysWithValues: entry.claims.map { (signers[$0.signer], view($0)) })
    }

    private func view(_ claim: Claim) -> ClaimView {
        ClaimView(stored: claim, signerFingerprint: signerFingerprints[claim.signerFingerprint].description)
    }

    private func record(_ holder: Holder) -> HolderRecord {
        let peer = peers[Int(holder.peer)]
        return HolderRecord(address: addresses[holder.address], name: peer.name, fingerprint: peer.fingerprint)
    }

    private func holderView(_ holder: Holder) -> HolderView {
        HolderView(record: record(holder), signer: signers[holder.signer])
    }

    /// The claim `signer` made on `file`, if any.
    func claim(on file: FileID, by signer: String) -> ClaimView? {
        guard let number = signers.find(signer), let entry = stored(file), let index = entry.claimIndex(number) else { return nil }
        return view(entry.claims[index])
    }

    /// The holders of `file` seen since `cutoff`, and the claim most of them announced (ties to
    /// the signer whose name sorts first); nil if none is live.
    func liveHolders(of file: FileID, since cutoff: Date) -> (claim: ClaimView, holders: [HolderRecord])? {
        let limit = cutoff.timeIntervalSinceReferenceDate
        guard let entry = stored(file) else { return nil }
        let live = entry.holders.filter { $0.lastSeen >= limit }
        guard !live.isEmpty else { return nil }
        var counts: [UInt32: Int] = [:]
        for holder in live { counts[holder.signer, default: 0] += 1 }
        let signer = counts.keys.min { (-counts[$0]!, signers[$0]) < (-counts[$1]!, signers[$1]) }!
        guard let index = entry.claimIndex(signer) else { return nil }
        return (view(entry.claims[index]), live.map(record))
    }

    /// The caller's entry for `file`, if it holds one.
    func holder(of file: FileID, fingerprint: String) -> HolderRecord? {
        guard let peer = peerNumber(fingerprint), let entry = stored(file) else { return nil }
        return entry.holders.first { $0.peer == peer }.map(record)
    }

    /// How many files the certificate holds.
    func heldCount(_ fingerprint: String) -> Int {
        peerNumber(fingerprint).map { peers[Int($0)].holding.count } ?? 0
    }

    /// The files `fingerprint` holds at `address`.
    func files(of fingerprint: String, at address: String) -> [FileID] {
        guard let peer = peerNumber(fingerprint) else { return [] }
        return peers[Int(peer)].holding.compactMap { slot in
            let entry = entries[Int(slot)]
            return entry.holders.contains { $0.peer == peer && addresses[$0.address] == address } ? entry.root.file : nil
        }
    }

    /// Every file, in no particular order.
    var allFiles: some Sequence<(RootKey, EntryView)> {
        slots.slots.lazy.map { slot in (entries[Int(slot)].root, view(entries[Int(slot)])) }
    }

    /// Holders silent since before `cutoff`, by file.
    func silentHolders(before cutoff: Date) -> [(FileID, [HolderRecord])] {
        let limit = cutoff.timeIntervalSinceReferenceDate
        return slots.slots.compactMap { slot in
            let root = entries[Int(slot)].root
            let silent = entries[Int(slot)].holders.filter { $0.lastSeen < limit }
            return silent.isEmpty ? nil : (root.file, silent.map(record))
        }
    }

    // MARK: Changing

    mutating func touch(_ file: FileID, fingerprint: String, now: Date) {
        guard let peer = peerNumber(fingerprint), let slot = slot(RootKey(file)),
              let index = entries[Int(slot)].holders.firstIndex(where: { $0.peer == peer }) else { return }
        entries[Int(slot)].holders[index].lastSeen = now.timeIntervalSinceReferenceDate
    }

    /// Forgets the files nobody has held since before `cutoff`; of those with a withdrawal, only
    /// the withdrawals stay.
    mutating func forgetVacant(before cutoff: Date) {
        let limit = cutoff.timeIntervalSinceReferenceDate
        for slot in Array(slots.slots) {
            let entry = entries[Int(slot)]
            let root = entry.root
            guard entry.holders.isEmpty, let vacantSince = entry.vacantSince, vacantSince < limit else { continue }
            if entry.hasWithdrawal {
                entries[Int(slot)].claims.removeAll { !$0.withdrawn }
            } else {
                free(root)
            }
        }
    }

    /// The slot of `root`, taking a free one (or a new one) if the root has none yet.
    private mutating func create(_ root: RootKey, vacantSince: Date?) -> UInt32 {
        let slot = freeSlots.last ?? UInt32(entries.count)
        if let held = index(slot, for: root) { return held }
        let entry = Entry(root: root, vacantSince: vacantSince?.timeIntervalSinceReferenceDate)
        if Int(slot) < entries.count {
            freeSlots.removeLast()
            entries[Int(slot)] = entry
        } else {
            entries.append(entry)
        }
        return slot
    }

    /// Finds `slot` by `root` from now on, unless `root` has a slot already: returns that one.
    private mutating func index(_ slot: UInt32, for root: RootKey) -> UInt32? {
        let entries = self.entries
        return slots.insert(slot, for: root) { entries[Int($0)].root }
    }

    /// Stops finding `root`; returns its slot.
    private mutating func unindex(_ root: RootKey) -> UInt32? {
        let entries = self.entries
        return slots.remove(root) { entries[Int($0)].root }
    }

    private mutating func free(_ root: RootKey) {
        guard let slot = unindex(root) else { return }
        for holder in entries[Int(slot)].holders { unlink(slot, from: holder.peer) }
        holderCount -= entries[Int(slot)].holders.count
        entries[Int(slot)] = Entry(root: root)
        freeSlots.append(slot)
    }

    private mutating func peer(name: String, fingerprint: Fingerprint) -> UInt32 {
        if let number = peerNumbers[fingerprint] { return number }
        peers.append(Peer(name: name, fingerprint: fingerprint.description))
        peerNumbers[fingerprint] = UInt32(peers.count - 1)
        return UInt32(peers.count - 1)
    }

    /// The number of `address`, where `peer` holds a file (most often where it held the last).
    private mutating func address(_ address: String, of peer: UInt32) -> UInt32 {
        if let last = peers[Int(peer)].lastAddress, addresses[last] == address { return last }
        let number = addresses.number(address)
        peers[Int(peer)].lastAddress = number
        return number
    }

    private mutating func unlink(_ slot: UInt32, from peer: UInt32) {
        guard let index = peers[Int(peer)].holding.firstIndex(of: slot) else { return }
        peers[Int(peer)].holding.swapAt(index, peers[Int(peer)].holding.count - 1)
        peers[Int(peer)].holding.removeLast()
    }

    private mutating func add(_ holder: Holder, to slot: UInt32) {
        entries[Int(slot)].vacantSince = nil
        if let index = entries[Int(slot)].holders.firstIndex(where: { $0.peer == holder.peer }) {
            entries[Int(slot)].holders[index] = holder
        } else {
            if entries[Int(slot)].holders.isEmpty { entries[Int(slot)].holders.reserveCapacity(2) }
            entries[Int(slot)].holders.append(holder)
            peers[Int(holder.peer)].holding.append(slot)
            holderCount += 1
        }
    }

    private mutating func dropHolder(_ peer: UInt32, of slot: UInt32, now: Date) {
        guard let index = entries[Int(slot)].holders.firstIndex(where: { $0.peer == peer }) else { return }
        entries[Int(slot)].holders.remove(at: index)
        if entries[Int(slot)].holders.isEmpty { entries[Int(slot)].vacantSince = now.timeIntervalSinceReferenceDate }
        unlink(slot, from: peer)
        holderCount -= 1
    }

    private mutating func dropHolders(_ dropped: [Holder], of slot: UInt32, now: Date) {
        for holder in dropped { dropHolder(holder.peer, of: slot, now: now) }
    }

    /// The holders of the file in `slot` at `address` named `name` (lines of the earlier format).
    private func holders(of slot: UInt32, at address: String, named name: String) -> [Holder] {
        entries[Int(slot)].holders.filter { addresses[$0.address] == address && peers[Int($0.peer)].name == name }
    }

    /// Puts back `entry` as it was before a change that could not be made durable.
    mutating func restore(_ file: FileID, to entry: Entry?) {
        free(RootKey(file))
        guard let entry else { return }
        let slot = create(entry.root, vacantSince: nil)
        for holder in entry.holders { add(holder, to: slot) }
        entries[Int(slot)].claims = entry.claims
        entries[Int(slot)].withdrawn = entry.withdrawn
        entries[Int(slot)].vacantSince = entry.vacantSince
    }

    /// Sets `signer`'s claim on the file in `slot` (a changed header replaces it, withdrawn or not).
    private mutating func setClaim(_ slot: UInt32, signer: String, fingerprint: Fingerprint, size: UInt64, name: String) {
        let claim = Claim(signer: signers.number(signer), signerFingerprint: signerFingerprints.number(fingerprint), size: size, name: name)
        if let index = entries[Int(slot)].claimIndex(claim.signer) {
            entries[Int(slot)].claims[index] = claim
        } else {
            entries[Int(slot)].claims.append(claim)
        }
    }

    /// A line of a journal from before shares carried proof: the first sharer of a root holds the
    /// claim, later ones hold under it; fingerprint `-` only keeps the claim.
    private mutating func applyUnproved(_ file: RootKey, size: UInt64, address: String, name: String, fingerprint: Fingerprint, fileName: String, now: Date) {
        let slot = create(file, vacantSince: now)
        if entries[Int(slot)].claims.isEmpty {
            setClaim(slot, signer: name, fingerprint: fingerprint, size: size, name: fileName)
        }
        let signer = entries[Int(slot)].claims.map(\.signer).min { signers[$0] < signers[$1] }!
        guard fingerprint != .none else { return }
        let peer = peer(name: name, fingerprint: fingerprint)
        add(Holder(peer: peer, address: self.address(address, of: peer), signer: signer, lastSeen: now.timeIntervalSinceReferenceDate), to: slot)
    }

    mutating func apply(_ line: JournalLine, now: Date) {
        switch line {
        case .claim(let file, let size, let signer, let signerFingerprint, let fileName):
            let slot = create(file, vacantSince: now)
            setClaim(slot, signer: signer, fingerprint: signerFingerprint, size: size, name: fileName)
        case .hold(let file, let signer, let address, let name, let fingerprint):
            // A holder is a certificate: a line without a fingerprint holds nothing.
            guard fingerprint != .none, let slot = slot(file),
                  let claim = entries[Int(slot)].claims.first(where: { signers[$0.signer] == signer }) else { return }
            let peer = peer(name: name, fingerprint: fingerprint)
            add(Holder(peer: peer, address: self.address(address, of: peer), signer: claim.signer, lastSeen: now.timeIntervalSinceReferenceDate), to: slot)
        case .share(let file, let size, let address, let name, let fingerprint, let fileName):
            applyUnproved(file, size: size, address: address, name: name, fingerprint: fingerprint, fileName: fileName, now: now)
        case .legacyFile(let file, let size, let owner, let fileName):
            applyUnproved(file, size: size, address: "-", name: owner, fingerprint: .none, fileName: fileName, now: now)
        case .remove(let file, _, _, let fingerprint):
            guard let slot = slot(file), let peer = peerNumbers[fingerprint] else { return }
            dropHolder(peer, of: slot, now: now)
        case .legacyRemove(let file, let address, let name):
            guard let slot = slot(file) else { return }
            let dropped = holders(of: slot, at: address, named: name)
            dropHolders(dropped, of: slot, now: now)
        case .withdraw(let file, nil):
            let slot = slot(file) ?? create(file, vacantSince: nil)
            let dropped = entries[Int(slot)].holders
            dropHolders(dropped, of: slot, now: now)
            entries[Int(slot)].withdrawn = true
        case .withdraw(let file, let signer?):
            guard let slot = slot(file), let number = signers.find(signer), let index = entries[Int(slot)].claimIndex(number) else { return }
            entries[Int(slot)].claims[index].withdrawn = true
            let dropped = entries[Int(slot)].holders.filter { $0.signer == number }
            dropHolders(dropped, of: slot, now: now)
        case .allow(let file):
            guard let slot = slot(file) else { return }
            entries[Int(slot)].withdrawn = false
            for index in entries[Int(slot)].claims.indices { entries[Int(slot)].claims[index].withdrawn = false }
            if entries[Int(slot)].holders.isEmpty { entries[Int(slot)].vacantSince = now.timeIntervalSinceReferenceDate }
        case .leave(let address, _, let fingerprint):
            guard let peer = peerNumbers[fingerprint] else { return }
            for slot in peers[Int(peer)].holding where entries[Int(slot)].holders.contains(where: { $0.peer == peer && addresses[$0.address] == address }) {
                dropHolder(peer, of: slot, now: now)
            }
        case .legacyLeave(let address, let name):
            for slot in Array(slots.slots) {
                let dropped = holders(of: slot, at: address, named: name)
                dropHolders(dropped, of: slot, now: now)
            }
        }
    }
}
