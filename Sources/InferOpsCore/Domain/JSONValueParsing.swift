/// Reading JSON text straight into a `JSONValue`.
///
/// `JSONDecoder` can only reach a `JSONValue` through `Decodable`, which cannot ask what comes next:
/// `init(from:)` tries bool, number, string and array in turn, and every miss builds and throws a
/// `DecodingError` with its coding path. On a stored plan that is most of the time spent reading an
/// operation. This parser looks at the next byte instead, and gives the same values.
extension JSONValue {
    /// Why a text is not JSON: the byte offset and what was wrong there. It never quotes the text,
    /// which may hold values.
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var offset: Int
        public var reason: String
        public var description: String { "not JSON at byte \(offset): \(reason)" }
    }

    /// How deeply arrays and objects may nest, as `JSONDecoder` allows.
    public static let maximumNesting = 512

    /// Parses one JSON document (RFC 8259): a value with optional white space around it.
    /// - Throws: `ParseError`.
    public init(parsing text: some Collection<UInt8>) throws {
        let bytes = Array(text)
        var parser = Parser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.failure("unexpected text after the value") }
        self = value
    }

    public init(parsing text: String) throws {
        try self.init(parsing: text.utf8)
    }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        init(bytes: [UInt8]) {
            self.bytes = bytes
        }

        func failure(_ reason: String) -> ParseError {
            ParseError(offset: index, reason: reason)
        }

        var next: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(ParseError) -> JSONValue {
            guard let byte = next else { throw failure("the text ends where a value should be") }
            switch byte {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw failure("unexpected character")
            }
        }

        mutating func literal(_ word: StaticString) throws(ParseError) {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw failure("unexpected end of the text") }
            let expected = UnsafeBufferPointer(start: word.utf8Start, count: count)
            for offset in 0..<count where bytes[index + offset] != expected[offset] {
                throw failure("unexpected character")
            }
            index += count
        }

        mutating func object(depth: Int) throws(ParseError) -> JSONValue {
            guard depth <= JSONValue.maximumNesting else { throw failure("nested too deeply") }
            index += 1  // {
            var members: [String: JSONValue] = [:]
            skipWhitespace()
            if next == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                guard next == UInt8(ascii: "\"") else { throw failure("an object key must be a string") }
                let key = try string()
                skipWhitespace()
                guard next == UInt8(ascii: ":") else { throw failure("expected `:` after an object key") }
                index += 1
                skipWhitespace()
                members[key] = try value(depth: depth)
                skipWhitespace()
                switch next {
                case UInt8(ascii: ","):
                    index += 1
                    skipWhitespace()
                case UInt8(ascii: "}"):
                    index += 1
                    return .object(members)
                default:
                    throw failure("expected `,` or `}` in an object")
                }
            }
        }

        mutating func array(depth: Int) throws(ParseError) -> JSONValue {
            guard depth <= JSONValue.maximumNesting else { throw failure("nested too deeply") }
            index += 1  // [
            var elements: [JSONValue] = []
            skipWhitespace()
            if next == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                elements.append(try value(depth: depth))
                skipWhitespace()
                switch next {
                case UInt8(ascii: ","):
                    index += 1
                    skipWhitespace()
                case UInt8(ascii: "]"):
                    index += 1
                    return .array(elements)
                default:
                    throw failure("expected `,` or `]` in an array")
                }
            }
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, read as a `Double`.
        mutating func number() throws(ParseError) -> Double {
            let start = index
            if next == UInt8(ascii: "-") { index += 1 }
            guard let first = next, isDigit(first) else { throw failure("a number needs a digit") }
            index += 1
            if first != UInt8(ascii: "0") { skipDigits() }
            if next == UInt8(ascii: ".") {
                index += 1
                guard let digit = next, isDigit(digit) else { throw failure("a fraction needs a digit") }
                skipDigits()
            }
            if next == UInt8(ascii: "e") || next == UInt8(ascii: "E") {
                index += 1
                if next == UInt8(ascii: "+") || next == UInt8(ascii: "-") { index += 1 }
                guard let digit = next, isDigit(digit) else { throw failure("an exponent needs a digit") }
                skipDigits()
            }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            guard let number = Double(text), number.isFinite else {
                index = start
                throw failure("the number is out of range")
            }
            return number
        }

        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

        mutating func skipDigits() {
            while let byte = next, isDigit(byte) { index += 1 }
        }

        mutating func string() throws(ParseError) -> String {
            index += 1  // "
            var buffer: [UInt8] = []
            var runStart = index
            while true {
                guard let byte = next else { throw failure("a string is not closed") }
                switch byte {
                case UInt8(ascii: "\""):
                    buffer.append(contentsOf: bytes[runStart..<index])
                    index += 1
                    guard let text = String(validating: buffer, as: UTF8.self) else {
                        throw failure("a string is not valid UTF-8")
                    }
                    return text
                case UInt8(ascii: "\\"):
                    buffer.append(contentsOf: bytes[runStart..<index])
                    index += 1
                    try escape(into: &buffer)
                    runStart = index
                case 0..<0x20:
                    throw failure("a control character must be escaped in a string")
                default:
                    index += 1
                }
            }
        }

        /// One escape after its backslash, appended as UTF-8.
        mutating func escape(into buffer: inout [UInt8]) throws(ParseError) {
            guard let byte = next else { throw failure("a string is not closed") }
            index += 1
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(byte)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hexQuad()
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate must be followed by an escaped low one.
                    guard next == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u")
                    else { throw failure("a high surrogate without its low surrogate") }
                    index += 2
                    let low = try hexQuad()
                    guard (0xDC00..<0xE000).contains(low) else { throw failure("a high surrogate without its low surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw failure("a low surrogate without its high surrogate")
                }
                guard let unicode = Unicode.Scalar(scalar) else { throw failure("not a Unicode scalar") }
                UTF8.encode(unicode) { buffer.append($0) }
            default:
                index -= 1
                throw failure("an unknown escape")
            }
        }

        mutating func hexQuad() throws(ParseError) -> UInt32 {
            guard index + 4 <= bytes.count else { throw failure("a \\u escape needs four hex digits") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw failure("a \\u escape needs four hex digits")
                }
                value = value << 4 | UInt32(digit)
                index += 1
            }
            return value
        }
    }
}
