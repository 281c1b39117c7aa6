import CZlib
import Foundation

/// Decompresses a gzip (or zlib) stream with zlib.
enum Gunzip {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Whether `data` starts with gzip's magic bytes.
    static func isGzip(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1f && data[data.startIndex + 1] == 0x8b
    }

    /// The decompressed bytes.
    /// - Parameter limit: the most bytes the result may have; a stream that would give more fails
    ///   (a small record must not be able to fill the daemon's memory).
    /// - Throws: `Failure` when the stream is damaged, truncated or too large.
    static func decompress(_ data: Data, limit: Int) throws -> Data {
        var stream = z_stream()
        guard czlib_inflate_init_any(&stream) == Z_OK else { throw Failure(description: "zlib could not start") }
        defer { inflateEnd(&stream) }
        var output = Data()
        let chunkSize = 64 << 10
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        var input = [UInt8](data)
        let inputCount = input.count
        return try input.withUnsafeMutableBufferPointer { inputBuffer in
            stream.next_in = inputBuffer.baseAddress
            stream.avail_in = uInt(inputCount)
            while true {
                let status = chunk.withUnsafeMutableBufferPointer { chunkBuffer in
                    stream.next_out = chunkBuffer.baseAddress
                    stream.avail_out = uInt(chunkSize)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunkSize - Int(stream.avail_out)
                output.append(contentsOf: chunk[0..<produced])
                guard output.count <= limit else {
                    throw Failure(description: "it decompresses to more than \(limit >> 20) MiB")
                }
                switch status {
                case Z_STREAM_END:
                    return output
                case Z_OK:
                    continue
                case Z_BUF_ERROR where stream.avail_in == 0:
                    throw Failure(description: "the compressed data is truncated")
                default:
                    throw Failure(description: "the compressed data is damaged (zlib status \(status))")
                }
            }
        }
    }
}
