// The bundle's preprocessing and postprocessing in plain Kotlin: no Android imports, no libraries,
// Kotlin 1.3 language level, so the JVM test (tests/apps/test_kotlin_vectors.py) compiles this file
// with Debian's kotlinc and checks it against the Python runtime's own test vectors.
//
// The contract comes from manifest.json's "input" block, in this order (pocketvit.runtime does the same):
//   1. colour: the camera's RGB/BGR/RGBA/gray pixels -> the model's color_order (RGB->GRAY with PIL's
//      integer luma (19595 R + 38470 G + 7471 B + 32768) >> 16)
//   2. resize: shorter side to `resize` (or exactly [h, w]), Pillow's BILINEAR filter, which is
//      antialiased when shrinking. This is Pillow's fixed-point algorithm (22-bit coefficients,
//      horizontal pass then vertical), so the pixels equal Pillow's exactly.
//   3. center crop to [height, width] (torchvision's offsets, zero padding when smaller)
//   4. pixel * scale, then (x - mean) / std per channel, in float32, laid out NCHW (or NHWC)
package dev.pocketvit

/** A tiny JSON reader: objects become Map<String, Any?>, arrays List<Any?>, numbers Double. */
object MiniJson {
    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipSpace()
        val v = p.value()
        p.skipSpace()
        if (p.i != text.length) p.fail("unexpected text after the JSON value")
        return v
    }

    private class Parser(val s: String) {
        var i = 0

        fun fail(msg: String): Nothing = throw IllegalArgumentException("JSON: $msg at offset $i")

        fun skipSpace() {
            while (i < s.length && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++
        }

        fun value(): Any? {
            if (i >= s.length) fail("unexpected end")
            return when (s[i]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> num()
            }
        }

        fun literal(word: String, v: Any?): Any? {
            if (!s.startsWith(word, i)) fail("expected $word")
            i += word.length
            return v
        }

        fun obj(): Map<String, Any?> {
            val m = LinkedHashMap<String, Any?>()
            i++
            skipSpace()
            if (i < s.length && s[i] == '}') { i++; return m }
            while (true) {
                skipSpace()
                if (i >= s.length || s[i] != '"') fail("expected a key")
                val k = str()
                skipSpace()
                if (i >= s.length || s[i] != ':') fail("expected ':'")
                i++
                skipSpace()
                m[k] = value()
                skipSpace()
                if (i >= s.length) fail("unterminated object")
                if (s[i] == ',') { i++; continue }
                if (s[i] == '}') { i++; return m }
                fail("expected ',' or '}'")
            }
        }

        fun arr(): List<Any?> {
            val a = ArrayList<Any?>()
            i++
            skipSpace()
            if (i < s.length && s[i] == ']') { i++; return a }
            while (true) {
                skipSpace()
                a.add(value())
                skipSpace()
                if (i >= s.length) fail("unterminated array")
                if (s[i] == ',') { i++; continue }
                if (s[i] == ']') { i++; return a }
                fail("expected ',' or ']'")
            }
        }

        fun str(): String {
            val b = StringBuilder()
            i++
            while (true) {
                if (i >= s.length) fail("unterminated string")
                val c = s[i++]
                when (c) {
                    '"' -> return b.toString()
                    '\\' -> {
                        if (i >= s.length) fail("bad escape")
                        val e = s[i++]
                        when (e) {
                            '"' -> b.append('"')
                            '\\' -> b.append('\\')
                            '/' -> b.append('/')
                            'b' -> b.append('\b')
                            'f' -> b.append('\u000C')
                            'n' -> b.append('\n')
                            'r' -> b.append('\r')
                            't' -> b.append('\t')
                            'u' -> {
                                if (i + 4 > s.length) fail("bad \\u escape")
                                b.append(Integer.parseInt(s.substring(i, i + 4), 16).toChar())
                                i += 4
                            }
                            else -> fail("bad escape \\$e")
                        }
                    }
                    else -> b.append(c)
                }
            }
        }

        fun num(): Double {
            val start = i
            while (i < s.length && (s[i].isDigit() || s[i] == '-' || s[i] == '+' || s[i] == '.' || s[i] == 'e' || s[i] == 'E')) i++
            if (start == i) fail("unexpected character '${s[start]}'")
            return s.substring(start, i).toDouble()
        }
    }
}

/** The manifest's "input" block: the whole preprocessing contract. */
class InputSpec(
    val height: Int,
    val width: Int,
    val channels: Int,
    val layout: String,
    val colorOrder: String,
    /** null, [shorter side], or [height, width] */
    val resize: IntArray?,
    val crop: IntArray,
    val scale: Float,
    val mean: FloatArray?,
    val std: FloatArray?
) {
    companion object {
        @Suppress("UNCHECKED_CAST")
        fun fromJson(m: Map<String, Any?>): InputSpec {
            fun int(key: String): Int = (m[key] as? Double)?.toInt()
                ?: throw IllegalArgumentException("manifest input.$key must be a number")
            fun floats(key: String): FloatArray? = (m[key] as? List<Any?>)?.map { (it as Double).toFloat() }?.toFloatArray()
            val h = int("height")
            val w = int("width")
            val c = int("channels")
            val r = m["resize"]
            val resize = when (r) {
                null -> null
                is Double -> intArrayOf(r.toInt())
                is List<*> -> intArrayOf((r[0] as Double).toInt(), (r[1] as Double).toInt())
                else -> throw IllegalArgumentException("manifest input.resize must be null, a number or [h, w]")
            }
            val crop = (m["crop"] as? List<Any?>)?.let { intArrayOf((it[0] as Double).toInt(), (it[1] as Double).toInt()) }
                ?: intArrayOf(h, w)
            return InputSpec(
                height = h, width = w, channels = c,
                layout = (m["layout"] as? String) ?: "NCHW",
                colorOrder = (m["color_order"] as? String) ?: (if (c == 1) "GRAY" else "RGB"),
                resize = resize, crop = crop,
                scale = ((m["scale"] as? Double) ?: (1.0 / 255.0)).toFloat(),
                mean = floats("mean"), std = floats("std")
            )
        }
    }
}

/** One entry of the manifest's "files": a target's model file. */
class ModelFile(val path: String, val sha256: String, val runtime: String, val inputForm: String)

/** What an app needs from manifest.json. */
class BundleManifest(val labels: List<String>, val input: InputSpec, val outputs: String, val files: Map<String, ModelFile>) {
    companion object {
        @Suppress("UNCHECKED_CAST")
        fun parse(json: String): BundleManifest {
            val m = MiniJson.parse(json) as? Map<String, Any?> ?: throw IllegalArgumentException("manifest must be a JSON object")
            val input = m["input"] as? Map<String, Any?> ?: throw IllegalArgumentException("manifest has no input block")
            val labels = (m["labels"] as? List<Any?>)?.map { it as String } ?: emptyList()
            val files = LinkedHashMap<String, ModelFile>()
            (m["files"] as? Map<String, Any?>)?.forEach { (target, v) ->
                val e = v as? Map<String, Any?> ?: return@forEach
                files[target] = ModelFile(
                    e["path"] as? String ?: "", e["sha256"] as? String ?: "", e["runtime"] as? String ?: "",
                    e["input_form"] as? String ?: "float-nchw"
                )
            }
            return BundleManifest(labels, InputSpec.fromJson(input), (m["outputs"] as? String) ?: "logits", files)
        }
    }
}

/** An image as interleaved uint8 bytes, row-major, `channels` per pixel (1, 3 or 4). */
class Pixels(val data: ByteArray, val height: Int, val width: Int, val channels: Int) {
    init {
        require(data.size == height * width * channels) { "expected ${height * width * channels} bytes, got ${data.size}" }
    }

    operator fun get(y: Int, x: Int, c: Int): Int = data[(y * width + x) * channels + c].toInt() and 0xFF

    companion object {
        /** Android's Bitmap.getPixels() gives ARGB ints; keep RGB (use input color "RGB"). */
        fun fromArgb(argb: IntArray, height: Int, width: Int): Pixels {
            val out = ByteArray(height * width * 3)
            for (i in 0 until height * width) {
                val p = argb[i]
                out[i * 3] = (p shr 16 and 0xFF).toByte()
                out[i * 3 + 1] = (p shr 8 and 0xFF).toByte()
                out[i * 3 + 2] = (p and 0xFF).toByte()
            }
            return Pixels(out, height, width, 3)
        }
    }
}

object Preprocess {
    private const val PRECISION_BITS = 32 - 8 - 2

    /** The model input for one image: float32, NCHW (or NHWC per the manifest), batch of 1. */
    fun run(image: Pixels, inputColor: String, spec: InputSpec): FloatArray {
        val colored = toColor(image, inputColor, spec.colorOrder)
        val size = resizedSize(colored.height, colored.width, spec)
        val resized = resizeBilinear(colored, size[0], size[1])
        val cropped = if (resized.height == spec.crop[0] && resized.width == spec.crop[1]) resized
                      else centerCrop(resized, spec.crop[0], spec.crop[1])
        return normalize(cropped, spec)
    }

    /** Step 1. inputColor: "RGB", "BGR" (OpenCV) or "GRAY"; 4-channel images lose alpha ("RGBA" = "RGB"). */
    fun toColor(img: Pixels, inputColor: String, colorOrder: String): Pixels {
        val src = when {
            img.channels == 1 -> "GRAY"
            inputColor.toUpperCase().startsWith("RGB") -> "RGB"
            inputColor.toUpperCase().startsWith("BGR") -> "BGR"
            else -> throw IllegalArgumentException("input color '$inputColor' does not fit a ${img.channels}-channel image")
        }
        val n = img.height * img.width
        val c = img.channels
        if (colorOrder == "GRAY") {
            if (src == "GRAY") return img
            val out = ByteArray(n)
            val ri = if (src == "RGB") 0 else 2
            val bi = 2 - ri
            for (i in 0 until n) {
                val r = img.data[i * c + ri].toInt() and 0xFF
                val g = img.data[i * c + 1].toInt() and 0xFF
                val b = img.data[i * c + bi].toInt() and 0xFF
                out[i] = ((r * 19595 + g * 38470 + b * 7471 + 32768) ushr 16).toByte()
            }
            return Pixels(out, img.height, img.width, 1)
        }
        val out = ByteArray(n * 3)
        val swap = src != "GRAY" && src != colorOrder
        for (i in 0 until n) {
            for (k in 0 until 3) {
                val from = if (src == "GRAY") 0 else if (swap) 2 - k else k
                out[i * 3 + k] = img.data[i * c + from]
            }
        }
        return Pixels(out, img.height, img.width, 3)
    }

    /** Step 2's target size: torchvision's rule for an int (shorter side), or [h, w], or the input size. */
    fun resizedSize(h: Int, w: Int, spec: InputSpec): IntArray {
        val r = spec.resize ?: return intArrayOf(spec.height, spec.width)
        if (r.size == 2) return intArrayOf(r[0], r[1])
        val size = r[0]
        return if (h <= w) intArrayOf(size, ((size * w).toDouble() / h).toInt())
               else intArrayOf(((size * h).toDouble() / w).toInt(), size)
    }

    /** Step 2: Pillow's BILINEAR resize (antialiased when shrinking), bit-exact. */
    fun resizeBilinear(img: Pixels, outH: Int, outW: Int): Pixels {
        var a = img
        if (outW != a.width) a = resampleHorizontal(a, outW)
        if (outH != a.height) a = resampleVertical(a, outH)
        return a
    }

    private class Coeffs(val ksize: Int, val bounds: IntArray, val k: IntArray)

    private fun bilinearFilter(v: Double): Double {
        val x = if (v < 0.0) -v else v
        return if (x < 1.0) 1.0 - x else 0.0
    }

    private fun coeffs(inSize: Int, outSize: Int): Coeffs {
        val scale = inSize.toDouble() / outSize
        val filterscale = if (scale < 1.0) 1.0 else scale
        val support = 1.0 * filterscale
        val ksize = Math.ceil(support).toInt() * 2 + 1
        val kk = DoubleArray(outSize * ksize)
        val bounds = IntArray(outSize * 2)
        val ss = 1.0 / filterscale
        for (xx in 0 until outSize) {
            val center = (xx + 0.5) * scale
            var ww = 0.0
            var xmin = (center - support + 0.5).toInt()
            if (xmin < 0) xmin = 0
            var xmax = (center + support + 0.5).toInt()
            if (xmax > inSize) xmax = inSize
            xmax -= xmin
            for (x in 0 until xmax) {
                val w = bilinearFilter((x + xmin - center + 0.5) * ss)
                kk[xx * ksize + x] = w
                ww += w
            }
            if (ww != 0.0) for (x in 0 until xmax) kk[xx * ksize + x] /= ww
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        val one = (1 shl PRECISION_BITS).toDouble()
        val k = IntArray(kk.size) { if (kk[it] < 0) (-0.5 + kk[it] * one).toInt() else (0.5 + kk[it] * one).toInt() }
        return Coeffs(ksize, bounds, k)
    }

    private fun clip8(ss: Int): Byte {
        val v = ss shr PRECISION_BITS
        return (if (v < 0) 0 else if (v > 255) 255 else v).toByte()
    }

    private fun resampleHorizontal(img: Pixels, outW: Int): Pixels {
        val cf = coeffs(img.width, outW)
        val c = img.channels
        val out = ByteArray(img.height * outW * c)
        for (y in 0 until img.height) {
            for (xx in 0 until outW) {
                val xmin = cf.bounds[xx * 2]
                val n = cf.bounds[xx * 2 + 1]
                for (ch in 0 until c) {
                    var ss = 1 shl (PRECISION_BITS - 1)
                    for (x in 0 until n) ss += img[y, x + xmin, ch] * cf.k[xx * cf.ksize + x]
                    out[(y * outW + xx) * c + ch] = clip8(ss)
                }
            }
        }
        return Pixels(out, img.height, outW, c)
    }

    private fun resampleVertical(img: Pixels, outH: Int): Pixels {
        val cf = coeffs(img.height, outH)
        val c = img.channels
        val w = img.width
        val out = ByteArray(outH * w * c)
        for (yy in 0 until outH) {
            val ymin = cf.bounds[yy * 2]
            val n = cf.bounds[yy * 2 + 1]
            for (x in 0 until w) {
                for (ch in 0 until c) {
                    var ss = 1 shl (PRECISION_BITS - 1)
                    for (y in 0 until n) ss += img[y + ymin, x, ch] * cf.k[yy * cf.ksize + y]
                    out[(yy * w + x) * c + ch] = clip8(ss)
                }
            }
        }
        return Pixels(out, outH, w, c)
    }

    /** Step 3: torchvision CenterCrop (offset round((H - h) / 2), half to even; zero padding when smaller). */
    fun centerCrop(img: Pixels, outH: Int, outW: Int): Pixels {
        var a = img
        if (a.height < outH || a.width < outW) {
            val ph = Math.max(outH - a.height, 0)
            val pw = Math.max(outW - a.width, 0)
            val top = ph / 2
            val left = pw / 2
            val h = a.height + ph
            val w = a.width + pw
            val padded = ByteArray(h * w * a.channels)
            for (y in 0 until a.height) {
                System.arraycopy(a.data, y * a.width * a.channels, padded, ((y + top) * w + left) * a.channels, a.width * a.channels)
            }
            a = Pixels(padded, h, w, a.channels)
        }
        val top = Math.rint((a.height - outH) / 2.0).toInt()
        val left = Math.rint((a.width - outW) / 2.0).toInt()
        val c = a.channels
        val out = ByteArray(outH * outW * c)
        for (y in 0 until outH) {
            System.arraycopy(a.data, ((y + top) * a.width + left) * c, out, y * outW * c, outW * c)
        }
        return Pixels(out, outH, outW, c)
    }

    /** Step 4: float32 (pixel * scale - mean) / std, NCHW or NHWC. */
    fun normalize(img: Pixels, spec: InputSpec): FloatArray {
        val h = img.height
        val w = img.width
        val c = img.channels
        val out = FloatArray(h * w * c)
        val nchw = spec.layout == "NCHW"
        for (ch in 0 until c) {
            val mean = spec.mean?.let { if (it.size == 1) it[0] else it[ch] }
            val std = spec.std?.let { if (it.size == 1) it[0] else it[ch] }
            for (y in 0 until h) {
                for (x in 0 until w) {
                    var v = img[y, x, ch].toFloat() * spec.scale
                    if (mean != null) v -= mean
                    if (std != null) v /= std
                    out[if (nchw) (ch * h + y) * w + x else (y * w + x) * c + ch] = v
                }
            }
        }
        return out
    }
}

object Postprocess {
    /** Softmax in double precision, returned as float32 (as pocketvit.runtime does). */
    fun softmax(logits: FloatArray): FloatArray {
        var max = Double.NEGATIVE_INFINITY
        for (v in logits) if (v > max) max = v.toDouble()
        val e = DoubleArray(logits.size) { Math.exp(logits[it] - max) }
        val sum = e.sum()
        return FloatArray(logits.size) { (e[it] / sum).toFloat() }
    }

    /** The k most probable labels, highest first; ties keep label order. */
    fun topK(probs: FloatArray, labels: List<String>, k: Int): List<Pair<String, Float>> {
        val n = Math.max(1, Math.min(k, probs.size))
        return probs.indices.sortedWith(Comparator { a, b -> java.lang.Float.compare(probs[b], probs[a]) })
            .take(n).map { Pair(if (it < labels.size) labels[it] else "#$it", probs[it]) }
    }

    /** The model's raw output (one row) -> top-k, by the manifest's "outputs" (logits or probabilities). */
    fun classify(output: FloatArray, manifest: BundleManifest, k: Int): List<Pair<String, Float>> {
        val probs = if (manifest.outputs == "probabilities") output else softmax(output)
        return topK(probs, manifest.labels, k)
    }
}
