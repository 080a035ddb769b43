import AVFoundation
import SwiftUI

struct ContentView: View {
    @StateObject private var camera = CameraModel()

    var body: some View {
        ZStack(alignment: .top) {
            CameraPreview(session: camera.session).ignoresSafeArea()
            VStack(alignment: .leading, spacing: 4) {
                Text(camera.headline).font(.title2.monospaced()).foregroundColor(Color(red: 0.31, green: 1, blue: 0.31))
                Text(camera.stats).font(.footnote.monospaced()).foregroundColor(.white)
            }
            .padding(12)
            .frame(maxWidth: .infinity, alignment: .leading)
            .background(Color.black.opacity(0.6))
        }
        .onAppear { camera.start() }
        .onDisappear { camera.stop() }
    }
}

/// AVCaptureVideoPreviewLayer in SwiftUI.
struct CameraPreview: UIViewRepresentable {
    let session: AVCaptureSession

    final class PreviewView: UIView {
        override class var layerClass: AnyClass { AVCaptureVideoPreviewLayer.self }
        var previewLayer: AVCaptureVideoPreviewLayer { layer as! AVCaptureVideoPreviewLayer }
    }

    func makeUIView(context: Context) -> PreviewView {
        let view = PreviewView()
        view.previewLayer.session = session
        view.previewLayer.videoGravity = .resizeAspectFill
        return view
    }

    func updateUIView(_ uiView: PreviewView, context: Context) {}
}
