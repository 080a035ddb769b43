plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.pocketvit"
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.pocketvit.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }
    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    // Model files are memory-mapped from the APK: they must not be compressed.
    androidResources {
        noCompress += listOf("tflite", "pte")
    }
}

// ./gradlew installDebug -PpocketvitBundle=/path/to/runs/fashion-mnist/bundle
// copies the bundle (manifest.json + model files) into the app's assets.
val copyBundle by tasks.registering(Copy::class) {
    val bundle = providers.gradleProperty("pocketvitBundle")
    onlyIf { bundle.isPresent }
    from(bundle.map { file(it) }) {
        include("manifest.json", "*.tflite", "*.pte", "labels.txt")
    }
    into(layout.projectDirectory.dir("src/main/assets/bundle"))
}
tasks.named("preBuild") { dependsOn(copyBundle) }

dependencies {
    val camerax = "1.4.1"
    implementation("androidx.camera:camera-core:$camerax")
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")
    implementation("androidx.appcompat:appcompat:1.7.0")
    // LiteRT (the TensorFlow Lite runtime under its new name; classes stay in org.tensorflow.lite)
    implementation("com.google.ai.edge.litert:litert:1.0.1")
    // ExecuTorch Android runtime (org.pytorch.executorch.Module), XNNPACK backend included
    implementation("org.pytorch:executorch-android:0.6.0")
}
