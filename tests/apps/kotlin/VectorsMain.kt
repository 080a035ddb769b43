// Test harness for apps/android's Preprocess.kt on the JVM: for every case folder written by
// pocketvit.demo.vectors.write_vectors, run the Kotlin preprocessing (and postprocessing when the
// case has logits) and write the results next to nothing else in OUT/<case>/ for Python to compare.
// Usage: java -jar vectors.jar VECTORS_DIR OUT_DIR
package dev.pocketvit

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

fun readFloats(f: File): FloatArray {
    val b = ByteBuffer.wrap(f.readBytes()).order(ByteOrder.LITTLE_ENDIAN)
    return FloatArray(b.remaining() / 4) { b.float }
}

fun writeFloats(f: File, v: FloatArray) {
    val b = ByteBuffer.allocate(v.size * 4).order(ByteOrder.LITTLE_ENDIAN)
    for (x in v) b.putFloat(x)
    f.writeBytes(b.array())
}

fun jsonString(s: String): String {
    val b = StringBuilder("\"")
    for (c in s) {
        when {
            c == '"' -> b.append("\\\"")
            c == '\\' -> b.append("\\\\")
            c < ' ' -> b.append(String.format("\\u%04x", c.toInt()))
            else -> b.append(c)
        }
    }
    return b.append('"').toString()
}

@Suppress("UNCHECKED_CAST")
fun main(args: Array<String>) {
    if (args.size != 2) {
        System.err.println("usage: java -jar vectors.jar VECTORS_DIR OUT_DIR")
        System.exit(2)
    }
    val cases = File(args[0]).listFiles()!!.filter { File(it, "case.json").isFile }.sortedBy { it.name }
    var n = 0
    for (dir in cases) {
        val case = MiniJson.parse(File(dir, "case.json").readText()) as Map<String, Any?>
        val manifest = BundleManifest.parse(File(dir, "manifest.json").readText())
        val h = (case["height"] as Double).toInt()
        val w = (case["width"] as Double).toInt()
        val c = (case["channels"] as Double).toInt()
        val image = Pixels(File(dir, "image.raw").readBytes(), h, w, c)
        val out = File(args[1], dir.name)
        out.mkdirs()
        val t0 = System.nanoTime()
        val tensor = Preprocess.run(image, case["input_color"] as String, manifest.input)
        val ms = (System.nanoTime() - t0) / 1e6
        writeFloats(File(out, "tensor.bin"), tensor)
        if (case["has_logits"] == true) {
            val k = (case["topk"] as Double).toInt()
            val top = Postprocess.classify(readFloats(File(dir, "logits.bin")), manifest, k)
            File(out, "topk.json").writeText(top.joinToString(", ", "[", "]\n") { "[" + jsonString(it.first) + ", " + it.second + "]" })
        }
        val targets = manifest.files.entries.joinToString(",") { it.key + "=" + it.value.runtime + ":" + it.value.sha256.take(8) }
        println("${dir.name}: ${tensor.size} values in ${"%.2f".format(ms)} ms; targets [$targets]")
        n++
    }
    println("done: $n cases")
}
