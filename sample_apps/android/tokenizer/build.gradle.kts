// Pure-Kotlin JVM library: no Android imports, so it is unit-testable on any JVM and usable from the app.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin { jvmToolchain(17) }

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

// `./gradlew :tokenizer:parity --args="tokenizer.json golden.json"` runs the same check pytest runs with kotlinc.
tasks.register<JavaExec>("parity") {
    classpath = sourceSets["test"].runtimeClasspath
    mainClass.set("org.xlnetedge.tokenizer.ParityMainKt")
}
