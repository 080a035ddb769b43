// The bundle's preprocessing contract in Swift: a line-by-line port of apps/android's Preprocess.kt,
// which is tested against pocketvit's Python runtime on the JVM. This Swift file has NOT been compiled
// or tested (no Swift toolchain on the Linux machine it was written on); see README.md.
//
// Order (as pocketvit.runtime): colour -> resize (Pillow BILINEAR, antialiased, fixed point) ->
// center crop -> pixel * scale, (x - mean) / std, float32, NCHW or NHWC.
import CoreVideo
import Foundation

struct BundleManifest: Decodable {
    struct Input: Decodable {
        var height: Int
        var width: Int
        var channels: Int
        var layout: String?
        var color_order: String?
        var resize: Resize?
        var crop: [Int]?
        var scale: Double?
        var mean: [Double]?
        var std: [Double]?

        /// null, an int (shorter side) or [height, width]
        enum Resize: Decodable {
            case shorter(Int)
            case exact(Int, Int)
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let v = try? c.decode(Int.self) { self = .shorter(v); return }
                let hw = try c.decode([Int].self)
                self = .exact(hw[0], hw[1])
            }
        }

        var colorOrder: String { color_order ?? (channels == 1 ? "GRAY" : "RGB") }
        var cropHW: (Int, Int) { crop.map { ($0[0], $0[1]) } ?? (height, width) }
    }

    struct File: Decodable {
        var path: String
        var sha256: String
        var runtime: String
        var input_form: String?
    }

    var labels: [String]
    var input: Input
    var outputs: String?
    var files: [String: File]
}

/// Interleaved uint8 pixels, row-major, `channels` per pixel.
struct Pixels {
    var data: [UInt8]
    var height: Int
    var width: Int
    var channels: Int

    subscript(y: Int, x: Int, c: Int) -> Int { Int(data[(y * width + x) * channels + c]) }

    /// A camera frame (kCVPixelFormatType_32BGRA) as BGRA bytes without row padding.
    static func fromBGRA(_ buffer: CVPixelBuffer) -> Pixels {
        CVPixelBufferLockBaseAddress(buffer, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(buffer, .readOnly) }
        let w = CVPixelBufferGetWidth(buffer), h = CVPixelBufferGetHeight(buffer)
        let stride = CVPixelBufferGetBytesPerRow(buffer)
        let base = CVPixelBufferGetBaseAddress(buffer)!.assumingMemoryBound(to: UInt8.self)
        var out = [UInt8](repeating: 0, count: w * h * 4)
        for y in 0..<h {
            for i in 0..<(w * 4) { out[y * w * 4 + i] = base[y * stride + i] }
        }
        return Pixels(data: out, height: h, width: w, channels: 4)
    }
}

enum Preprocess {
    private static let precisionBits = 32 - 8 - 2

    static func run(_ image: Pixels, inputColor: String, spec: BundleManifest.Input) -> [Float] {
        let colored = toColor(image, inputColor: inputColor, colorOrder: spec.colorOrder)
        let (rh, rw) = resizedSize(colored.height, colored.width, spec)
        let resized = resizeBilinear(colored, rh, rw)
        let (ch, cw) = spec.cropHW
        let cropped = (resized.height == ch && resized.width == cw) ? resized : centerCrop(resized, ch, cw)
        return normalize(cropped, spec)
    }

    /// inputColor "RGB"/"BGR" (4-channel images lose alpha) or gray (1 channel).
    static func toColor(_ img: Pixels, inputColor: String, colorOrder: String) -> Pixels {
        let src = img.channels == 1 ? "GRAY" : (inputColor.uppercased().hasPrefix("RGB") ? "RGB" : "BGR")
        let n = img.height * img.width, c = img.channels
        if colorOrder == "GRAY" {
            if src == "GRAY" { return img }
            let ri = src == "RGB" ? 0 : 2, bi = 2 - ri
            var out = [UInt8](repeating: 0, count: n)
            for i in 0..<n {
                let r = UInt32(img.data[i * c + ri]), g = UInt32(img.data[i * c + 1]), b = UInt32(img.data[i * c + bi])
                out[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16)
            }
            return Pixels(data: out, height: img.height, width: img.width, channels: 1)
        }
        let swap = src != "GRAY" && src != colorOrder
        var out = [UInt8](repeating: 0, count: n * 3)
        for i in 0..<n {
            for k in 0..<3 {
                let from = src == "GRAY" ? 0 : (swap ? 2 - k : k)
                out[i * 3 + k] = img.data[i * c + from]
            }
        }
        return Pixels(data: out, height: img.height, width: img.width, channels: 3)
    }

    static func resizedSize(_ h: Int, _ w: Int, _ spec: BundleManifest.Input) -> (Int, Int) {
        switch spec.resize {
        case .none: return (spec.height, spec.width)
        case .exact(let rh, let rw): return (rh, rw)
        case .shorter(let size):
            return h <= w ? (size, Int(Double(size * w) / Double(h))) : (Int(Double(size * h) / Double(w)), size)
        }
    }

    static func resizeBilinear(_ img: Pixels, _ outH: Int, _ outW: Int) -> Pixels {
        var a = img
        if outW != a.width { a = resample(a, outW, horizontal: true) }
        if outH != a.height { a = resample(a, outH, horizontal: false) }
        return a
    }

    /// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter.
    private static func coeffs(_ inSize: Int, _ outSize: Int) -> (ksize: Int, bounds: [Int], k: [Int32]) {
        let scale = Double(inSize) / Double(outSize)
        let filterscale = max(scale, 1.0)
        let support = 1.0 * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var kk = [Double](repeating: 0, count: outSize * ksize)
        var bounds = [Int](repeating: 0, count: outSize * 2)
        let ss = 1.0 / filterscale
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            var ww = 0.0
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            for x in 0..<xmax {
                let t = abs((Double(x + xmin) - center + 0.5) * ss)
                let w = t < 1.0 ? 1.0 - t : 0.0
                kk[xx * ksize + x] = w
                ww += w
            }
            if ww != 0 { for x in 0..<xmax { kk[xx * ksize + x] /= ww } }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        let one = Double(1 << precisionBits)
        let k = kk.map { Int32($0 < 0 ? (-0.5 + $0 * one) : (0.5 + $0 * one)) }
        return (ksize, bounds, k)
    }

    private static func clip8(_ ss: Int32) -> UInt8 {
        let v = ss >> Int32(precisionBits)
        return UInt8(v < 0 ? 0 : (v > 255 ? 255 : v))
    }

    private static func resample(_ img: Pixels, _ outSize: Int, horizontal: Bool) -> Pixels {
        let cf = coeffs(horizontal ? img.width : img.height, outSize)
        let c = img.channels
        let outH = horizontal ? img.height : outSize, outW = horizontal ? outSize : img.width
        var out = [UInt8](repeating: 0, count: outH * outW * c)
        for y in 0..<outH {
            for x in 0..<outW {
                let o = horizontal ? x : y
                let lo = cf.bounds[o * 2], n = cf.bounds[o * 2 + 1]
                for ch in 0..<c {
                    var ss: Int32 = 1 << Int32(precisionBits - 1)
                    for i in 0..<n {
                        let p = horizontal ? img[y, i + lo, ch] : img[i + lo, x, ch]
                        ss &+= Int32(p) &* cf.k[o * cf.ksize + i]
                    }
                    out[(y * outW + x) * c + ch] = clip8(ss)
                }
            }
        }
        return Pixels(data: out, height: outH, width: outW, channels: c)
    }

    /// torchvision CenterCrop: offset round((H - h) / 2) half to even, zero padding when smaller.
    static func centerCrop(_ img: Pixels, _ outH: Int, _ outW: Int) -> Pixels {
        var a = img
        if a.height < outH || a.width < outW {
            let ph = max(outH - a.height, 0), pw = max(outW - a.width, 0)
            let h = a.height + ph, w = a.width + pw
            var padded = [UInt8](repeating: 0, count: h * w * a.channels)
            for y in 0..<a.height {
                for i in 0..<(a.width * a.channels) {
                    padded[((y + ph / 2) * w + pw / 2) * a.channels + i] = a.data[y * a.width * a.channels + i]
                }
            }
            a = Pixels(data: padded, height: h, width: w, channels: a.channels)
        }
        let top = Int((Double(a.height - outH) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(a.width - outW) / 2).rounded(.toNearestOrEven))
        var out = [UInt8](repeating: 0, count: outH * outW * a.channels)
        for y in 0..<outH {
            for i in 0..<(outW * a.channels) {
                out[y * outW * a.channels + i] = a.data[((y + top) * a.width + left) * a.channels + i]
            }
        }
        return Pixels(data: out, height: outH, width: outW, channels: a.channels)
    }

    static func normalize(_ img: Pixels, _ spec: BundleManifest.Input) -> [Float] {
        let h = img.height, w = img.width, c = img.channels
        let scale = Float(spec.scale ?? 1.0 / 255.0)
        let nchw = (spec.layout ?? "NCHW") == "NCHW"
        var out = [Float](repeating: 0, count: h * w * c)
        for ch in 0..<c {
            let mean = spec.mean.map { Float($0.count == 1 ? $0[0] : $0[ch]) }
            let std = spec.std.map { Float($0.count == 1 ? $0[0] : $0[ch]) }
            for y in 0..<h {
                for x in 0..<w {
                    var v = Float(img[y, x, ch]) * scale
                    if let mean { v -= mean }
                    if let std { v /= std }
                    out[nchw ? (ch * h + y) * w + x : (y * w + x) * c + ch] = v
                }
            }
        }
        return out
    }
}

enum Postprocess {
    static func softmax(_ logits: [Float]) -> [Float] {
        let m = Double(logits.max() ?? 0)
        let e = logits.map { exp(Double($0) - m) }
        let s = e.reduce(0, +)
        return e.map { Float($0 / s) }
    }

    /// Top-k (label, probability), highest first; ties keep label order.
    static func classify(_ output: [Float], manifest: BundleManifest, k: Int) -> [(String, Float)] {
        let p = manifest.outputs == "probabilities" ? output : softmax(output)
        let order = p.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : $0 < $1 }
        return order.prefix(max(1, k)).map { ($0 < manifest.labels.count ? manifest.labels[$0] : "#\($0)", p[$0]) }
    }
}
