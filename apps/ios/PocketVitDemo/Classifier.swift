// The bundle's Core ML target on camera frames. Two paths, chosen by the model's input type:
//  - image input (a Core ML file that carries the preprocessing, e.g. a classifier with an image
//    input): Vision's VNCoreMLRequest scales and crops the frame and runs the model;
//  - MLMultiArray input (what pocketvit's Core ML export writes today: float NCHW "input"): the
//    manifest's preprocessing contract in Preprocess.swift, then MLModel.prediction.
import CoreML
import CryptoKit
import Foundation
import Vision

enum ClassifierError: Error, CustomStringConvertible {
    case bundle(String)
    case model(String)
    var description: String {
        switch self {
        case .bundle(let m), .model(let m): return m
        }
    }
}

struct ClassifierResult {
    var top: [(String, Float)]
    var preprocessMs: Double
    var inferenceMs: Double
    var path: String
}

final class Classifier {
    let manifest: BundleManifest
    let target: String
    private let model: MLModel
    private let vision: VNCoreMLModel?
    private let inputName: String

    init(bundleURL: URL) throws {
        let data = try Data(contentsOf: bundleURL.appendingPathComponent("manifest.json"))
        manifest = try JSONDecoder().decode(BundleManifest.self, from: data)
        guard let (name, file) = manifest.files.first(where: { $0.value.runtime == "coreml" }) else {
            throw ClassifierError.bundle("the bundle has no Core ML target (it has \(manifest.files.keys.sorted())); build it with export.targets including coreml")
        }
        target = name
        let packageURL = bundleURL.appendingPathComponent(file.path)
        // The runtimes run a damaged model silently; the manifest's sha256 is the only protection.
        let actual = try treeSHA256(packageURL)
        guard actual == file.sha256 else {
            throw ClassifierError.bundle("\(file.path): sha256 mismatch (expected \(file.sha256.prefix(12)), got \(actual.prefix(12))); re-copy the bundle")
        }
        let compiled = try MLModel.compileModel(at: packageURL)
        let config = MLModelConfiguration()
        config.computeUnits = .all
        model = try MLModel(contentsOf: compiled, configuration: config)
        guard let input = model.modelDescription.inputDescriptionsByName.first else {
            throw ClassifierError.model("the Core ML model has no input")
        }
        inputName = input.key
        vision = input.value.type == .image ? try VNCoreMLModel(for: model) : nil
    }

    func classify(_ pixels: CVPixelBuffer, k: Int = 3) throws -> ClassifierResult {
        if let vision { return try classifyWithVision(pixels, vision, k: k) }
        let t0 = CACurrentMediaTime()
        let image = Pixels.fromBGRA(pixels)
        let tensor = Preprocess.run(image, inputColor: "BGR", spec: manifest.input)
        let shape = manifest.input.layout == "NHWC"
            ? [1, manifest.input.height, manifest.input.width, manifest.input.channels]
            : [1, manifest.input.channels, manifest.input.height, manifest.input.width]
        let array = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
        tensor.withUnsafeBufferPointer { src in
            array.dataPointer.bindMemory(to: Float.self, capacity: tensor.count).update(from: src.baseAddress!, count: tensor.count)
        }
        let t1 = CACurrentMediaTime()
        let out = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: array)]))
        let t2 = CACurrentMediaTime()
        guard let name = model.modelDescription.outputDescriptionsByName.keys.sorted().first,
              let logits = out.featureValue(for: name)?.multiArrayValue else {
            throw ClassifierError.model("the Core ML model returned no MLMultiArray output")
        }
        let row = (0..<logits.count).map { Float(truncating: logits[$0]) }
        return ClassifierResult(top: Postprocess.classify(row, manifest: manifest, k: k),
                                preprocessMs: (t1 - t0) * 1e3, inferenceMs: (t2 - t1) * 1e3, path: "Core ML")
    }

    private func classifyWithVision(_ pixels: CVPixelBuffer, _ vision: VNCoreMLModel, k: Int) throws -> ClassifierResult {
        let request = VNCoreMLRequest(model: vision)
        // Vision scales the shorter side and crops the centre, like the manifest's resize + crop, but
        // with its own filter: expect small pixel differences from pocketvit's Pillow-exact resize.
        request.imageCropAndScaleOption = .centerCrop
        let t0 = CACurrentMediaTime()
        try VNImageRequestHandler(cvPixelBuffer: pixels, orientation: .up).perform([request])
        let ms = (CACurrentMediaTime() - t0) * 1e3
        if let classes = request.results as? [VNClassificationObservation] {
            return ClassifierResult(top: classes.prefix(k).map { ($0.identifier, $0.confidence) },
                                    preprocessMs: 0, inferenceMs: ms, path: "Vision")
        }
        guard let feature = (request.results as? [VNCoreMLFeatureValueObservation])?.first?.featureValue.multiArrayValue else {
            throw ClassifierError.model("Vision returned neither classes nor an MLMultiArray")
        }
        let row = (0..<feature.count).map { Float(truncating: feature[$0]) }
        return ClassifierResult(top: Postprocess.classify(row, manifest: manifest, k: k),
                                preprocessMs: 0, inferenceMs: ms, path: "Vision")
    }
}

/// sha256 as pocketvit writes it in the manifest: a file's digest, or for a folder (.mlpackage) the
/// digest of the lines "<sha256 of file>  <relative posix path>\n", sorted by path.
func treeSHA256(_ url: URL) throws -> String {
    func hex(_ d: SHA256.Digest) -> String { d.map { String(format: "%02x", $0) }.joined() }
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
        throw ClassifierError.bundle("\(url.lastPathComponent) is missing from the bundle")
    }
    if !isDir.boolValue { return hex(SHA256.hash(data: try Data(contentsOf: url))) }
    let root = url.standardizedFileURL.path + "/"
    var lines: [(String, String)] = []
    let files = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.isRegularFileKey])!
    for case let f as URL in files where (try f.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
        let rel = String(f.standardizedFileURL.path.dropFirst(root.count))
        lines.append((rel, hex(SHA256.hash(data: try Data(contentsOf: f)))))
    }
    let text = lines.sorted { $0.0 < $1.0 }.map { "\($0.1)  \($0.0)\n" }.joined()
    return hex(SHA256.hash(data: Data(text.utf8)))
}
