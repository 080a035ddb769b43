// Runs the bundle's model file on the device: LiteRT (.tflite) or ExecuTorch (.pte). Everything about
// pixels and labels is in Preprocess.kt; this file only moves a float tensor in and logits out.
package dev.pocketvit

import android.content.Context
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.tensorflow.lite.Interpreter
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.security.MessageDigest

interface ModelRunner : AutoCloseable {
    val name: String
    /** One preprocessed image (Preprocess.run's output) -> the model's raw output row. */
    fun run(input: FloatArray): FloatArray
}

/** The bundle in assets/bundle/: manifest.json plus the model files it lists. */
class AssetBundle(private val context: Context) {
    val manifestJson: String = context.assets.open("bundle/manifest.json").bufferedReader().use { it.readText() }
    val manifest: BundleManifest = BundleManifest.parse(manifestJson)

    /** litert first (smallest runtime), then executorch; the app cannot run onnx or coreml files. */
    fun open(preferred: List<String> = listOf("litert", "executorch")): ModelRunner {
        for (runtime in preferred) {
            val entry = manifest.files.entries.firstOrNull { it.value.runtime == runtime && it.value.inputForm == "float-nchw" }
                ?: continue
            val file = copyVerified(entry.value)
            return when (runtime) {
                "litert" -> LiteRtRunner(entry.key, file, manifest.input)
                else -> ExecuTorchRunner(entry.key, file, manifest.input)
            }
        }
        throw IllegalStateException("the bundle has no litert or executorch target (it has ${manifest.files.keys})")
    }

    /** Copies the model out of the APK (ExecuTorch needs a path) and checks its sha256 against the
     *  manifest, as pocketvit.runtime does: the runtimes themselves run a damaged file silently. */
    private fun copyVerified(entry: ModelFile): File {
        val out = File(context.filesDir, "bundle/${entry.path}")
        if (!out.exists() || sha256(out.readBytes()) != entry.sha256) {
            out.parentFile?.mkdirs()
            context.assets.open("bundle/${entry.path}").use { input -> out.outputStream().use { input.copyTo(it) } }
        }
        val actual = sha256(out.readBytes())
        check(actual == entry.sha256) { "${entry.path}: sha256 mismatch (expected ${entry.sha256.take(12)}, got ${actual.take(12)}); re-copy the bundle" }
        return out
    }

    private fun sha256(data: ByteArray): String =
        MessageDigest.getInstance("SHA-256").digest(data).joinToString("") { "%02x".format(it) }
}

class LiteRtRunner(override val name: String, file: File, spec: InputSpec) : ModelRunner {
    private val interpreter = Interpreter(file, Interpreter.Options().setNumThreads(4))
    private val input = ByteBuffer.allocateDirect(spec.height * spec.width * spec.channels * 4).order(ByteOrder.nativeOrder())
    private val output = Array(1) { FloatArray(interpreter.getOutputTensor(0).shape().last()) }

    override fun run(input: FloatArray): FloatArray {
        this.input.rewind()
        this.input.asFloatBuffer().put(input)
        interpreter.run(this.input, output)
        return output[0].copyOf()
    }

    override fun close() = interpreter.close()
}

class ExecuTorchRunner(override val name: String, file: File, private val spec: InputSpec) : ModelRunner {
    private val module = Module.load(file.absolutePath)
    private val shape = if (spec.layout == "NCHW") longArrayOf(1, spec.channels.toLong(), spec.height.toLong(), spec.width.toLong())
                        else longArrayOf(1, spec.height.toLong(), spec.width.toLong(), spec.channels.toLong())

    override fun run(input: FloatArray): FloatArray =
        module.forward(EValue.from(Tensor.fromBlob(input, shape)))[0].toTensor().dataAsFloatArray

    override fun close() = module.destroy()
}
