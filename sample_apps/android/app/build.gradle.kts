plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.xlnetedge.app"
    compileSdk = 34
    defaultConfig {
        applicationId = "org.xlnetedge.app"
        minSdk = 27          // NNAPI 1.1+ for the legacy path (XNNPACK needs less); String.codePoints() needs API 24+
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
    androidResources { noCompress += listOf("tflite", "pte") }  // models are memory-mapped, not inflated
}

dependencies {
    implementation(project(":tokenizer"))
    implementation("com.google.ai.edge.litert:litert:1.4.0")          // Interpreter + NNAPI delegate + XNNPACK
    implementation("org.pytorch:executorch-android:0.7.0")            // org.pytorch.executorch.Module for .pte
    implementation("com.facebook.soloader:soloader:0.10.5")           // executorch-android's native loader
}
