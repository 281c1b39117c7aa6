import Foundation
import InferOpsConsole
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pseudo-terminal for the line editor: the editor gets the terminal side, the test types on the
/// other side and reads what the editor draws there, as a terminal emulator would.
final class PseudoTerminal {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The side a terminal emulator holds: keys are written here, the drawing is read here.
    let controller: Int32
    /// The side the program sees as its terminal.
    let terminal: Int32
    /// The terminal's modes before any program touched them.
    let initialModes: termios
    private var drawn: [UInt8] = []

    init() throws {
        controller = Self.openController(O_RDWR | O_NOCTTY)
        guard controller >= 0, Self.grant(controller) == 0, Self.unlock(controller) == 0,
            let name = Self.terminalName(controller)
        else { throw Failure(description: "no pseudo-terminal: \(String(cString: strerror(errno)))") }
        terminal = open(name, O_RDWR | O_NOCTTY)
        guard terminal >= 0 else { throw Failure(description: "cannot open \(String(cString: name))") }
        var modes = termios()
        _ = tcgetattr(terminal, &modes)
        initialModes = modes
    }

    // The C library's pseudo-terminal calls are declared for X/Open programs only, so Swift's Glibc
    // module does not show them; they are looked up by name and called as the C functions they are.
    private static let openController = cFunction("posix_openpt", as: (@convention(c) (Int32) -> Int32).self)
    private static let grant = cFunction("grantpt", as: (@convention(c) (Int32) -> Int32).self)
    private static let unlock = cFunction("unlockpt", as: (@convention(c) (Int32) -> Int32).self)
    private static let terminalName = cFunction(
        "ptsname", as: (@convention(c) (Int32) -> UnsafeMutablePointer<CChar>?).self)

    private static func cFunction<Function>(_ name: String, as type: Function.Type) -> Function {
        guard let symbol = dlsym(nil, name) else { fatalError("the C library has no \(name)") }
        return unsafeBitCast(symbol, to: type)
    }

    deinit {
        close(controller)
        close(terminal)
    }

    /// Everything drawn so far, as text.
    var screen: String { String(decoding: drawn, as: UTF8.self) }

    /// Types `keys` as a terminal sends them: Enter is `\r`, Ctrl-A is `\u{01}`, arrow up `\e[A`.
    func type(_ keys: String) {
        var bytes = Array(keys.utf8)
        _ = write(controller, &bytes, bytes.count)
    }

    /// Reads what the program draws until `condition` holds for all of it, and returns it all.
    /// - Throws: when `condition` still does not hold after `limit` (the program is stuck).
    @discardableResult
    func waitForScreen(
        within limit: Duration = .seconds(10), _ what: String, until condition: (String) -> Bool
    ) throws -> String {
        let deadline = ContinuousClock.now + limit
        while !condition(screen) {
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                throw Failure(description: "the terminal never showed \(what); it shows \(screen.debugDescription)")
            }
            var entry = pollfd(fd: controller, events: Int16(POLLIN), revents: 0)
            let (seconds, attoseconds) = left.components
            let milliseconds = Int32(seconds * 1000 + attoseconds / 1_000_000_000_000_000)
            guard poll(&entry, 1, max(1, milliseconds)) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = read(controller, &buffer, buffer.count)
            if count > 0 { drawn.append(contentsOf: buffer[0..<count]) }
        }
        return screen
    }

    /// Waits until the prompt has been drawn `count` times in all: the editor waits for keys then.
    func waitForPrompt(_ prompt: String, count: Int = 1) throws {
        try waitForScreen("prompt number \(count)") { $0.occurrences(of: prompt) >= count }
    }

    /// The terminal's modes as the program left them.
    var modes: termios {
        var modes = termios()
        _ = tcgetattr(terminal, &modes)
        return modes
    }
}

extension String {
    func occurrences(of part: String) -> Int {
        components(separatedBy: part).count - 1
    }
}
