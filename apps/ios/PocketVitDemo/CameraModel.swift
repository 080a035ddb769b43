// Camera frames -> Classifier. alwaysDiscardsLateVideoFrames keeps only the newest frame while the
// model is busy, like the desktop demo's latest-frame queue.
import AVFoundation
import Foundation

final class CameraModel: NSObject, ObservableObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    let session = AVCaptureSession()
    @Published var headline = "loading…"
    @Published var stats = ""
    private let queue = DispatchQueue(label: "pocketvit.camera")
    private var classifier: Classifier?
    private var lastFrame: CFTimeInterval = 0
    private var fps: Double = 0

    override init() {
        super.init()
        do {
            guard let url = Bundle.main.url(forResource: "bundle", withExtension: nil) else {
                throw ClassifierError.bundle("no 'bundle' folder in the app: copy the pocketvit bundle to PocketVitDemo/bundle")
            }
            classifier = try Classifier(bundleURL: url)
        } catch {
            headline = "cannot load the bundle"
            stats = "\(error)"
        }
    }

    func start() {
        guard classifier != nil else { return }
        AVCaptureDevice.requestAccess(for: .video) { granted in
            guard granted else {
                DispatchQueue.main.async { self.headline = "camera permission denied" }
                return
            }
            self.queue.async { self.configureAndRun() }
        }
    }

    func stop() { queue.async { self.session.stopRunning() } }

    private func configureAndRun() {
        guard session.inputs.isEmpty else { session.startRunning(); return }
        session.beginConfiguration()
        session.sessionPreset = .vga640x480
        guard let device = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: device), session.canAddInput(input) else {
            DispatchQueue.main.async { self.headline = "no camera" }
            session.commitConfiguration()
            return
        }
        session.addInput(input)
        let output = AVCaptureVideoDataOutput()
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(self, queue: queue)
        if session.canAddOutput(output) { session.addOutput(output) }
        if let connection = output.connection(with: .video) {  // portrait: frames arrive upright
            if #available(iOS 17.0, *) { connection.videoRotationAngle = 90 } else { connection.videoOrientation = .portrait }
        }
        session.commitConfiguration()
        session.startRunning()
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let classifier, let pixels = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        do {
            let r = try classifier.classify(pixels)
            let now = CACurrentMediaTime()
            if lastFrame > 0 { fps = 0.9 * fps + 0.1 / max(now - lastFrame, 1e-3) }
            lastFrame = now
            let head = r.top.first.map { "\($0.0)  \(String(format: "%.2f", $0.1))" } ?? "-"
            let line = String(format: "%.1f FPS  %.1f ms (+%.1f pre)  exit final  [%@, %@]",
                              fps, r.inferenceMs, r.preprocessMs, classifier.target, r.path)
            DispatchQueue.main.async { self.headline = head; self.stats = line }
        } catch {
            DispatchQueue.main.async { self.stats = "\(error)" }
        }
    }
}
