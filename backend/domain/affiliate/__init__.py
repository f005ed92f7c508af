"""The affiliate programme's rules: conversion status changes, postbacks, commissions."""
