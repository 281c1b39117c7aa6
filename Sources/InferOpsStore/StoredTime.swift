import Foundation

/// How times and durations are written to the database: whole milliseconds in an `INTEGER` column.
///
/// Integers sort and compare exactly in SQL and read back to the same millisecond on every
/// platform, which a `REAL` or a formatted string does not promise. Anything finer than a
/// millisecond is rounded away.
enum StoredTime {
    static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    static func date(milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        Int64((duration / .milliseconds(1)).rounded())
    }

    static func duration(milliseconds: Int64) -> Duration {
        .milliseconds(milliseconds)
    }

    /// ISO 8601 in UTC with exactly three fraction digits, such as `2023-11-14T22:13:20.123Z`.
    ///
    /// The fraction is taken from the integer rather than from the formatter, so a value such as
    /// `.123`, which is `.12299…` as a `Double`, never prints as `.122`.
    static func iso8601(milliseconds: Int64) -> String {
        let (seconds, fraction) = floorDivision(milliseconds, by: 1000)
        let whole = Date(timeIntervalSince1970: Double(seconds)).formatted(Date.ISO8601FormatStyle())
        let digits = String(fraction)
        return whole.dropLast() + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
    }

    /// Division that rounds toward negative infinity, so times before 1970 keep a positive fraction.
    private static func floorDivision(_ value: Int64, by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let remainder = ((value % divisor) + divisor) % divisor
        return ((value - remainder) / divisor, remainder)
    }
}
