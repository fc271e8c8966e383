package org.xlnetedge.app

import java.io.File
import kotlin.system.exitProcess

/**
 * JVM check of the app's model verification (run by tests/test_sample_apps.py with kotlinc + java):
 *
 *   VerifyModelMainKt BUNDLE [MODEL ...]
 *
 * For each MODEL (an artifact name; default: the first valid tflite and pte, as the app picks them) runs
 * verifyModelFile, the check the app makes before it loads a model ("valid": true, a "file" inside the bundle, the
 * manifest's SHA-256), and prints "name<TAB>file<TAB>sha256". A refused model prints "error: REASON" on stderr and
 * exits with code 2, as the app shows the reason instead of loading the model.
 */
fun main(args: Array<String>) {
    val bundle = File(args[0])
    try {
        val spec = BundleSpec.parse(File(bundle, "manifest.json").readText(), File(bundle, "labels.json").readText())
        val artifacts = if (args.size > 1) args.drop(1).map { spec.artifact(it, "") }
        else listOf("tflite", "pte").map { spec.artifact(null, it) }
        for (artifact in artifacts) {
            val file = verifyModelFile(bundle, artifact)
            println("${artifact.name}\t${file.path}\t${artifact.sha256}")
        }
    } catch (err: IllegalArgumentException) {  // BundleException and the manifest's own errors
        System.err.println("VerifyModelMain: error: ${err.message}")
        exitProcess(2)
    }
}
