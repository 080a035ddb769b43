// pocketvit iOS sample: camera preview + the bundle's Core ML model, top label drawn over it.
import SwiftUI

@main
struct PocketVitDemoApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
