// CameraX preview with the bundle's top label, score and latency drawn over it. The analyzer keeps
// only the newest frame (STRATEGY_KEEP_ONLY_LATEST), like the desktop demo's latest-frame queue.
package dev.pocketvit

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.Color
import android.graphics.Matrix
import android.os.Bundle
import android.os.SystemClock
import android.view.Gravity
import android.widget.FrameLayout
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.util.concurrent.Executors

class MainActivity : AppCompatActivity() {
    private lateinit var preview: PreviewView
    private lateinit var overlay: TextView
    private lateinit var manifest: BundleManifest
    private lateinit var runner: ModelRunner
    private val analysisThread = Executors.newSingleThreadExecutor()
    private var lastFrameMs = 0L
    private var fps = 0.0

    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else overlay.text = "camera permission denied"
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        preview = PreviewView(this)
        overlay = TextView(this).apply {
            setTextColor(Color.rgb(80, 255, 80))
            setBackgroundColor(Color.argb(150, 0, 0, 0))
            textSize = 18f
            setPadding(24, 24, 24, 24)
        }
        setContentView(FrameLayout(this).apply {
            addView(preview)
            addView(overlay, FrameLayout.LayoutParams(FrameLayout.LayoutParams.MATCH_PARENT, FrameLayout.LayoutParams.WRAP_CONTENT, Gravity.TOP))
        })
        try {
            val bundle = AssetBundle(this)
            manifest = bundle.manifest
            runner = bundle.open()
        } catch (e: Exception) {
            overlay.text = "cannot load the bundle: ${e.message}\ncopy it into app/src/main/assets/bundle/ (see README)"
            return
        }
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) startCamera()
        else askCamera.launch(Manifest.permission.CAMERA)
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val previewUseCase = Preview.Builder().build().also { it.setSurfaceProvider(preview.surfaceProvider) }
            val analysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analysisThread) { image -> analyze(image) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, previewUseCase, analysis)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun analyze(image: ImageProxy) {
        val bitmap = image.use { upright(it.toBitmap(), it.imageInfo.rotationDegrees) }
        val argb = IntArray(bitmap.width * bitmap.height)
        bitmap.getPixels(argb, 0, bitmap.width, 0, 0, bitmap.width, bitmap.height)
        val t0 = SystemClock.elapsedRealtimeNanos()
        val input = Preprocess.run(Pixels.fromArgb(argb, bitmap.height, bitmap.width), "RGB", manifest.input)
        val t1 = SystemClock.elapsedRealtimeNanos()
        val top = Postprocess.classify(runner.run(input), manifest, 3)
        val t2 = SystemClock.elapsedRealtimeNanos()
        val now = SystemClock.elapsedRealtime()
        if (lastFrameMs > 0) fps = 0.9 * fps + 0.1 * (1000.0 / Math.max(1L, now - lastFrameMs))
        lastFrameMs = now
        val text = "${top[0].first}  ${"%.2f".format(top[0].second)}\n" +
            "%.1f FPS  %.1f ms (+%.1f pre)  exit final  [%s]".format(fps, (t2 - t1) / 1e6, (t1 - t0) / 1e6, runner.name) +
            top.drop(1).joinToString("") { "\n  ${it.first} ${"%.2f".format(it.second)}" }
        runOnUiThread { overlay.text = text }
    }

    private fun upright(bitmap: Bitmap, degrees: Int): Bitmap =
        if (degrees == 0) bitmap
        else Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, Matrix().apply { postRotate(degrees.toFloat()) }, true)

    override fun onDestroy() {
        super.onDestroy()
        analysisThread.shutdown()
        if (::runner.isInitialized) runner.close()
    }
}
