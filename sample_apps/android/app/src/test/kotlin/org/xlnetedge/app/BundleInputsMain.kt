package org.xlnetedge.app

import org.xlnetedge.tokenizer.MiniJson
import org.xlnetedge.tokenizer.XLNetTokenizer
import java.io.File

/**
 * JVM check of the app's bundle handling (run by tests/test_sample_apps.py with kotlinc + java):
 *
 *   BundleInputsMainKt BUNDLE TEXTS.json
 *
 * Picks the default tflite and pte artifacts as the app does, tokenizes each text with the Kotlin tokenizer at the
 * length bucket the app picks (encodeBucketed) and prints one line per artifact, text and model input of the method
 * that length runs in: "name<TAB>method<TAB>input<TAB>dtype<TAB>values".
 */
fun main(args: Array<String>) {
    val bundle = File(args[0])
    val spec = BundleSpec.parse(File(bundle, "manifest.json").readText(), File(bundle, "labels.json").readText())
    val tokenizer = XLNetTokenizer.load(File(bundle, "tokenizer.json"))
    @Suppress("UNCHECKED_CAST")
    val texts = MiniJson.parse(File(args[1]).readText()) as List<String>
    for (format in listOf("tflite", "pte")) {
        val artifact = spec.artifact(null, format)
        artifact.requireLengths(tokenizer.sequenceLengths)
        for (text in texts) {
            val encoded = tokenizer.encodeBucketed(text)
            val method = artifact.method(encoded.inputIds.size)
            for (input in modelInputs(artifact, encoded, spec.maskValue)) {
                val values = input.ints?.joinToString(" ") ?: input.floats!!.joinToString(" ")
                println("${artifact.name}\t${method.name}\t${input.spec.name}\t${input.spec.dtype}\t$values")
            }
        }
    }
}
