// pocketvit Android sample: CameraX preview + a bundle's LiteRT (.tflite) or ExecuTorch (.pte) model.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "pocketvit-demo"
include(":app")
