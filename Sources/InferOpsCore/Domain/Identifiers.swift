/// An immutable chat user id (Slack `U…`, Mattermost user id, or a console name).
///
/// Authorization always compares these, never display names, which users can change.
public struct UserID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public static func < (lhs: UserID, rhs: UserID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The id of an operation, shown in chat as `op-` followed by eight hex digits.
public struct OperationID: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public static func < (lhs: OperationID, rhs: OperationID) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Whether `text` has the form of an id: `op-` and eight lower-case hex digits.
    public static func isWellFormed(_ text: String) -> Bool {
        text.hasPrefix("op-") && text.count == 11
            && text.dropFirst(3).unicodeScalars.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }

    /// A fresh random id.
    public static func random() -> OperationID {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt32
        let hex = String(value, radix: 16)
        return OperationID("op-" + String(repeating: "0", count: 8 - hex.count) + hex)
    }
}
